"""What the mailbox pages show about fetching: status, badge, first-fetch progress, fetch log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case as sql_case
from sqlmodel import Session, col, func, select

from webapp.db import utcnow
from webapp.models import FetchRun, Mailbox, Message, RawMessage, WatchLease
from webapp.models import message as states
from webapp.services.fetching import leases
from webapp.services.fetching.schedule import WATCHED_POLL
from webapp.services.push import leases as push_leases

STALE_INTERVALS = 3
FAILED_STATES = (states.FAILED, states.TOO_LARGE)


@dataclass
class MailboxStatus:
    """One mailbox's fetching, in the words the page shows."""

    fetching: bool  # fetching is on (Continue was pressed, the mailbox is enabled)
    running: bool  # a worker holds the lease now
    queued: bool  # a job is enqueued and has not started yet
    last_fetch_at: datetime | None
    last_fetch_ok_at: datetime | None
    next_fetch_at: datetime | None
    last_error_kind: str | None
    last_error: str | None
    last_error_advice: str | None  # what to do about it
    messages_fetched: int
    messages_failed: int  # failed to parse or too large (see the fetch log)
    messages_waiting: int  # stored, not processed yet
    cases_made: int  # messages fetched here that opened a new case
    stale: bool  # badge: no successful fetch for 3 intervals
    failures: int = 0  # failed fetches in a row: the next try backs off (services/fetching/run.py)
    progress_done: int | None = None  # first fetch in progress: done of total
    progress_total: int | None = None


@dataclass
class FetchLogEntry:
    run: FetchRun
    failed: list[RawMessage] = field(default_factory=list)
    cases: int = 0  # messages of this run that opened a new case
    quiet: bool = False  # a QuietRuns line is quiet


@dataclass
class QuietRuns:
    """Consecutive runs that found nothing, one line of the fetch log: "14 checks, nothing new"."""

    runs: list[FetchRun]  # newest first, like the log
    quiet: bool = True

    @property
    def run(self) -> FetchRun:
        """The oldest: "Older runs" continues below it."""
        return self.runs[-1]

    @property
    def first_started(self) -> datetime:
        return self.runs[-1].started_at

    @property
    def last_started(self) -> datetime:
        return self.runs[0].started_at


def found_nothing(entry: FetchLogEntry) -> bool:
    """A finished, successful run that fetched nothing and has nothing to say."""
    run = entry.run
    return (
        run.state == "ok"
        and not run.first_run
        and run.new_messages == 0
        and run.failed_messages == 0
        and not run.notes
        and not entry.failed
    )


def fold_quiet(entries: list[FetchLogEntry]) -> list[FetchLogEntry | QuietRuns]:
    """Two or more runs in a row that found nothing become one QuietRuns line."""
    folded: list[FetchLogEntry | QuietRuns] = []
    streak: list[FetchLogEntry] = []
    for entry in [*entries, None]:
        if entry is not None and found_nothing(entry):
            streak.append(entry)
            continue
        if len(streak) > 1:
            folded.append(QuietRuns(runs=[quiet.run for quiet in streak]))
        else:
            folded.extend(streak)
        streak = []
        if entry is not None:
            folded.append(entry)
    return folded


def _count(db: Session, mailbox_id: int, *where) -> int:
    query = (
        select(func.count())
        .select_from(RawMessage)
        .where(RawMessage.mailbox_id == mailbox_id, *where)
    )
    return int(db.exec(query).one())


def is_stale(mailbox: Mailbox, now: datetime | None = None) -> bool:
    """Fetching is on but nothing was fetched successfully for STALE_INTERVALS intervals."""
    if not (mailbox.enabled and mailbox.fetching_enabled):
        return False
    since = mailbox.last_fetch_ok_at or mailbox.fetching_since
    if since is None:
        return False
    limit = timedelta(seconds=STALE_INTERVALS * max(mailbox.fetch_interval_seconds, 1))
    return (now or utcnow()) - since > limit


def mailbox_status(db: Session, mailbox: Mailbox) -> MailboxStatus:
    now = utcnow()
    running = leases.held(db, mailbox.id)
    next_fetch_at = mailbox.next_fetch_due_at
    watched = db.exec(push_leases.watched_ids(now).where(WatchLease.mailbox_id == mailbox.id))
    if watched.first() is not None and next_fetch_at and mailbox.last_fetch_at:
        next_fetch_at = max(next_fetch_at, mailbox.last_fetch_at + WATCHED_POLL)
    status = MailboxStatus(
        fetching=bool(mailbox.enabled and mailbox.fetching_enabled),
        running=running,
        queued=mailbox.fetch_queued_at is not None,
        last_fetch_at=mailbox.last_fetch_at,
        last_fetch_ok_at=mailbox.last_fetch_ok_at,
        next_fetch_at=next_fetch_at,
        last_error_kind=mailbox.last_fetch_error_kind,
        last_error=mailbox.last_fetch_error,
        last_error_advice=mailbox.last_fetch_error_advice,
        messages_fetched=_count(db, mailbox.id, RawMessage.state != states.SKIPPED),
        messages_failed=_count(db, mailbox.id, col(RawMessage.state).in_(FAILED_STATES)),
        messages_waiting=_count(db, mailbox.id, RawMessage.state == states.NEW),
        cases_made=_cases_made(db, RawMessage.mailbox_id == mailbox.id),
        stale=is_stale(mailbox, now),
        failures=mailbox.fetch_failures,
    )
    if running and not mailbox.initial_fetch_done:
        run = db.exec(
            select(FetchRun)
            .where(FetchRun.mailbox_id == mailbox.id, FetchRun.state == "running")
            .order_by(col(FetchRun.id).desc())
        ).first()
        if run is not None:
            status.progress_done, status.progress_total = run.done, run.total
    return status


def _cases_made(db: Session, *where) -> int:
    query = (
        select(func.count())
        .select_from(Message)
        .join(RawMessage, col(Message.raw_message_id) == col(RawMessage.id))
        .where(col(Message.opened_case).is_(True), *where)
    )
    return int(db.exec(query).one())


def _cases_by_run(db: Session, run_ids: list[int]) -> dict[int, int]:
    query = (
        select(RawMessage.fetch_run_id, func.count())
        .join(Message, col(Message.raw_message_id) == col(RawMessage.id))
        .where(col(RawMessage.fetch_run_id).in_(run_ids), col(Message.opened_case).is_(True))
        .group_by(RawMessage.fetch_run_id)
    )
    return {run_id: int(n) for run_id, n in db.exec(query).all()}


# Runs read to fill one page of the log: quiet runs fold, so a page covers more than `limit`.
RUNS_PER_PAGE = 500


def fetch_log(
    db: Session, mailbox_id: int, limit: int = 20, before_id: int | None = None
) -> list[FetchLogEntry | QuietRuns]:
    """The latest runs, newest first, each with the messages it could not turn into cases and
    the cases it made; runs in a row that found nothing are folded into one line."""
    query = select(FetchRun).where(FetchRun.mailbox_id == mailbox_id)
    if before_id is not None:
        query = query.where(col(FetchRun.id) < before_id)
    runs = db.exec(query.order_by(col(FetchRun.id).desc()).limit(RUNS_PER_PAGE)).all()
    entries = {run.id: FetchLogEntry(run=run) for run in runs}
    if entries:
        failed = db.exec(
            select(RawMessage)
            .where(
                col(RawMessage.fetch_run_id).in_(list(entries)),
                col(RawMessage.state).in_([*FAILED_STATES, states.IGNORED]),
            )
            .order_by(col(RawMessage.id))
        ).all()
        for raw in failed:
            entries[raw.fetch_run_id].failed.append(raw)
        for run_id, cases in _cases_by_run(db, list(entries)).items():
            entries[run_id].cases = cases
    return fold_quiet(list(entries.values()))[:limit]


def failed_messages(db: Session, mailbox_id: int, limit: int = 50) -> list[RawMessage]:
    """Messages kept raw that did not become cases, newest first (for Reprocess)."""
    query = (
        select(RawMessage)
        .where(
            RawMessage.mailbox_id == mailbox_id,
            col(RawMessage.state).in_([*FAILED_STATES, states.IGNORED, states.REFETCH]),
        )
        .order_by(col(RawMessage.id).desc())
        .limit(limit)
    )
    return list(db.exec(query).all())


def raw_message_counts(db: Session, mailbox_ids: list[int]) -> dict[int, tuple[int, int]]:
    """mailbox id -> (raw messages stored, of those failed or too large): one grouped query."""
    if not mailbox_ids:
        return {}
    failed = func.sum(sql_case((col(RawMessage.state).in_(FAILED_STATES), 1), else_=0))
    query = (
        select(RawMessage.mailbox_id, func.count(), failed)
        .where(col(RawMessage.mailbox_id).in_(mailbox_ids))
        .group_by(RawMessage.mailbox_id)
    )
    counts = {mailbox_id: (0, 0) for mailbox_id in mailbox_ids}
    for mailbox_id, total, failures in db.exec(query).all():
        counts[mailbox_id] = (int(total), int(failures or 0))
    return counts
