"""The fetch log row of one run and the outcome it leaves on the mailbox.

Written with plain UPDATEs by id, never through a dirty ORM object: a run must be
able to record its end after a rollback, and even after its mailbox was deleted.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from webapp import yielding
from webapp.db import utcnow
from webapp.models import FetchRun, Mailbox, RawMessage
from webapp.models import message as states
from webapp.services.fetching.leases import LeaseKeeper
from webapp.services.ingest.parse_ahead import ParseAhead

RUN_BUDGET_SECONDS = 600  # then the run stops cleanly and the next one is due at once
MAX_BACKOFF = timedelta(minutes=30)  # a failing mailbox is retried at least this often

Progress = Callable[[int, int | None], None]
Error = tuple[str, str, str]  # kind, message, what to do


@dataclass
class RunContext:
    """Everything one fetch run carries around."""

    db: Session
    mailbox: Mailbox
    mailbox_id: int
    run_id: int
    holder: str
    keeper: LeaseKeeper
    progress: Progress | None = None
    backlog: bool = False  # messages stored by this run are backlog (never acknowledged)
    notes: str = ""
    fetch_commands: int = 0
    started: float = field(default_factory=time.monotonic)
    ahead: ParseAhead = field(default_factory=ParseAhead)  # parses in a helper meanwhile
    waited_before: float = field(default_factory=yielding.waited)  # giving way to pages

    def counts(self) -> tuple[int, int | None]:
        done, total = self.db.exec(
            select(FetchRun.done, FetchRun.total).where(FetchRun.id == self.run_id)
        ).one()
        return done, total

    def after_batch(self) -> bool:
        """Report progress; True when the run used its time budget and must stop."""
        if self.progress is not None:
            self.progress(*self.counts())
        delay = float(os.environ.get("MAILCHANNEL_TEST_BATCH_DELAY") or 0)
        if delay:
            time.sleep(delay)  # tests: leave time to SIGKILL the worker between batches
        return time.monotonic() - self.started > RUN_BUDGET_SECONDS

    def note(self, text: str) -> None:
        """Add a sentence to the run's notes in the fetch log."""
        self.notes = f"{self.notes} {text}".strip()

    def add_total(self, count: int) -> None:
        """Another folder listed: its messages join the run's total (progress)."""
        self.db.exec(
            update(FetchRun)
            .where(col(FetchRun.id) == self.run_id)
            .values(total=func.coalesce(FetchRun.total, 0) + count)
        )
        self.db.commit()
        if self.progress is not None:
            self.progress(*self.counts())

    def set_total(self, total: int) -> None:
        self.db.exec(update(FetchRun).where(col(FetchRun.id) == self.run_id).values(total=total))
        self.db.commit()
        if self.progress is not None:
            self.progress(0, total)


def start_run(db: Session, mailbox: Mailbox, holder: str) -> int:
    """A new fetch log row; runs left "running" by a dead worker are marked interrupted."""
    db.exec(
        update(FetchRun)
        .where(col(FetchRun.mailbox_id) == mailbox.id, col(FetchRun.state) == "running")
        .values(state="interrupted", finished_at=utcnow())
    )
    run = FetchRun(mailbox_id=mailbox.id, holder=holder, first_run=not mailbox.initial_fetch_done)
    db.add(run)
    db.commit()
    return run.id


def close_run(ctx: RunContext, state: str, error: Error | None) -> dict:
    """Finish the log row; what the job returns."""
    db = ctx.db
    gave_way = yielding.waited() - ctx.waited_before
    if gave_way >= 1:
        ctx.note(
            f"Waited {gave_way:.0f} s in all while people were using the pages "
            "(background work gives way to them: WORKER_YIELD)."
        )
    failed = db.exec(
        select(func.count())
        .select_from(RawMessage)
        .where(
            RawMessage.fetch_run_id == ctx.run_id,
            col(RawMessage.state).in_([states.FAILED, states.TOO_LARGE]),
        )
    ).one()
    kind, message, advice = error or (None, None, None)
    db.exec(
        update(FetchRun)
        .where(col(FetchRun.id) == ctx.run_id)
        .values(
            finished_at=utcnow(),
            state=state,
            failed_messages=failed,
            fetch_commands=ctx.fetch_commands,
            notes=ctx.notes,
            error_kind=kind,
            error=message,
            error_advice=advice,
        )
    )
    db.commit()
    new = db.exec(select(FetchRun.new_messages).where(FetchRun.id == ctx.run_id)).first() or 0
    return {
        "state": state,
        "run": ctx.run_id,
        "new": new,
        "failed": failed,
        "fetch_commands": ctx.fetch_commands,
    }


def backoff(interval: int, failures: int) -> timedelta:
    """The wait after the n-th failure in a row: the interval, doubled each time, up to 30
    minutes (or the interval, if longer); less up to a tenth, at random, so that mailboxes
    that failed together (their server was down) do not all try again together."""
    ceiling = max(MAX_BACKOFF.total_seconds(), interval)
    seconds = min(interval * 2 ** min(failures - 1, 20), ceiling)
    return timedelta(seconds=seconds * random.uniform(0.9, 1.0))


def finish(ctx: RunContext, error: Error | None, more: bool = False) -> dict:
    """Close the log row and record the outcome, next due time and backlog state on the mailbox."""
    result = close_run(ctx, "error" if error else "ok", error)
    db = ctx.db
    mailbox = db.get(Mailbox, ctx.mailbox_id)
    if mailbox is None:
        return result
    db.refresh(mailbox)
    now = utcnow()
    mailbox.last_fetch_at = now
    interval = max(mailbox.fetch_interval_seconds, 1)
    if error:
        mailbox.fetch_failures += 1
        mailbox.last_fetch_error_kind, mailbox.last_fetch_error, mailbox.last_fetch_error_advice = (
            error
        )
        mailbox.next_fetch_due_at = now + backoff(interval, mailbox.fetch_failures)
    else:
        mailbox.fetch_failures = 0
        mailbox.last_fetch_error_kind = mailbox.last_fetch_error = (
            mailbox.last_fetch_error_advice
        ) = None
        mailbox.last_fetch_ok_at = now
        mailbox.initial_fetch_done = mailbox.initial_fetch_done or not more
        mailbox.next_fetch_due_at = now if more else now + timedelta(seconds=interval)
    db.add(mailbox)
    db.commit()
    return result
