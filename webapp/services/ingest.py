"""Process a stored raw message: parse → case or comment → contact. Idempotent.

One raw row is processed in one transaction that ends with the row marked done;
Message.raw_message_id is unique, so processing the same row twice (a rerun after
SIGKILL, two workers) can never add a second comment. The attempt counter is
committed before parsing: a message that kills the worker every time is marked
failed after MAX_ATTEMPTS instead of blocking its mailbox forever.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from webapp.db import utcnow
from webapp.mail.parse import DEFAULT_LIMITS, ParseError, ParseLimits, TooLarge, parse_message
from webapp.models import Mailbox, Message, RawMessage, RawMessageBody
from webapp.models import message as states
from webapp.services import filing
from webapp.services import tasks as task_replies

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def limits_for(mailbox: Mailbox) -> ParseLimits:
    """The parse limits of a mailbox: its own raw size limit, the defaults for the rest."""
    return replace(DEFAULT_LIMITS, max_raw_bytes=mailbox.max_message_bytes)


def pending_ids(db: Session, mailbox_id: int, limit: int | None = None) -> list[int]:
    """Raw rows stored but not processed yet, oldest first (what a crash left behind)."""
    query = (
        select(RawMessage.id)
        .where(RawMessage.mailbox_id == mailbox_id, RawMessage.state == states.NEW)
        .order_by(col(RawMessage.id))
    )
    if limit:
        query = query.limit(limit)
    return list(db.exec(query).all())


def process_raw(db: Session, raw_id: int, limits: ParseLimits | None = None) -> str:
    """Turn one stored raw message into a case or a comment; returns its final state."""
    if not _start_attempt(db, raw_id):
        raw = db.get(RawMessage, raw_id)
        return raw.state if raw else "gone"
    raw = db.get(RawMessage, raw_id)
    db.refresh(raw)
    mailbox = db.get(Mailbox, raw.mailbox_id)
    if raw.attempts > MAX_ATTEMPTS:
        return _finish(
            db,
            raw,
            states.FAILED,
            f"processing was interrupted {MAX_ATTEMPTS} times "
            "(the worker died or timed out on this message); Reprocess to try again",
        )
    body = db.get(RawMessageBody, raw_id)
    if body is None:
        return _finish(db, raw, states.FAILED, "the raw bytes of this message are missing")
    try:
        parsed = parse_message(body.data, limits or limits_for(mailbox))
    except TooLarge as exc:
        return _finish(db, raw, states.TOO_LARGE, exc.reason)
    except ParseError as exc:
        log.info("raw message %s failed to parse: %s", raw_id, exc.reason)
        return _finish(db, raw, states.FAILED, exc.reason)
    try:
        return _file(db, mailbox, raw, parsed)
    except OperationalError:
        raise  # the database is unavailable: not this message's fault, the next run retries
    except Exception as exc:  # a bug, or a value the database refuses: keep the message, go on
        db.rollback()
        log.exception("filing raw message %s failed", raw_id)
        return _finish(
            db,
            raw,
            states.FAILED,
            f"unexpected {type(exc).__name__} while filing "
            f"the message: {str(exc)[:200]}; Reprocess after the fix",
        )


def _file(db: Session, mailbox: Mailbox, raw: RawMessage, parsed) -> str:
    for attempt in (1, 2):
        try:
            # A reply to a task-assignment email goes into the task's history, not a case.
            if task_replies.route_task_reply(db, mailbox, parsed, raw):
                return _finish(db, raw, states.DONE, None)
            ignored = filing.file_message(db, mailbox, raw, parsed)
            _test_delay()
            return _finish(db, raw, states.IGNORED if ignored else states.DONE, ignored)
        except IntegrityError:
            # A concurrent writer made the same contact or participant, or this row was
            # filed meanwhile: start over from what is committed now.
            db.rollback()
            if _already_filed(db, raw.id):
                return _finish(db, raw, states.DONE, None)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _test_delay() -> None:
    """Tests: hold the filing transaction open so a SIGKILL lands mid-processing."""
    delay = float(os.environ.get("MAILCHANNEL_TEST_PROCESS_DELAY") or 0)
    if delay:
        time.sleep(delay)


def _start_attempt(db: Session, raw_id: int) -> bool:
    """Count an attempt on a NEW row and commit it; False if the row is not NEW (nothing to do)."""
    counted = db.exec(
        update(RawMessage)
        .where(col(RawMessage.id) == raw_id, col(RawMessage.state) == states.NEW)
        .values(attempts=RawMessage.attempts + 1)
    ).rowcount
    db.commit()
    return counted == 1


def _already_filed(db: Session, raw_id: int) -> bool:
    return db.exec(select(Message.id).where(Message.raw_message_id == raw_id)).first() is not None


def _finish(db: Session, raw: RawMessage, state: str, error: str | None) -> str:
    """Record the outcome in the transaction that filed the message (if any), and commit.

    Only a NEW row changes state: if a concurrent run (Reprocess while a fetch job
    processes) finished it first, this transaction is rolled back and its outcome kept.
    """
    changed = db.exec(
        update(RawMessage)
        .where(col(RawMessage.id) == raw.id, col(RawMessage.state) == states.NEW)
        .values(state=state, error=error, processed_at=utcnow())
    ).rowcount
    if changed != 1:
        db.rollback()
        db.refresh(raw)
        return raw.state
    db.commit()
    db.refresh(raw)
    return state


def process_ids(
    db: Session, raw_ids: list[int], limits: ParseLimits | None = None
) -> dict[str, int]:
    """Process rows in order; counts per final state. A failing message never stops the rest."""
    counts: dict[str, int] = {}
    for raw_id in raw_ids:
        state = process_raw(db, raw_id, limits)
        counts[state] = counts.get(state, 0) + 1
    return counts


def process_pending(db: Session, mailbox_id: int, check=None) -> dict[str, int]:
    """Process every unprocessed raw row of a mailbox; `check()` runs between messages."""
    counts: dict[str, int] = {}
    seen: set[int] = set()
    while ids := [i for i in pending_ids(db, mailbox_id, limit=100) if i not in seen]:
        for raw_id in ids:
            seen.add(raw_id)
            if check is not None:
                check()
            state = process_raw(db, raw_id)
            counts[state] = counts.get(state, 0) + 1
    return counts


def reprocess(db: Session, raw_message_id: int, limits: ParseLimits | None = None) -> str:
    """Retry a failed or ignored message now; a too-large one is downloaded again by the next fetch.

    Returns the new state: done/failed/ignored, or "refetch" when the next fetch must
    download the message first (it was never downloaded because of its size).
    """
    raw = db.get(RawMessage, raw_message_id)
    if raw is None:
        raise LookupError(f"raw message {raw_message_id} does not exist")
    if raw.state == states.DONE:
        return raw.state
    has_body = db.get(RawMessageBody, raw_message_id) is not None
    if not has_body and raw.state == states.TOO_LARGE:
        raw.state, raw.error = states.REFETCH, None
        db.add(raw)
        db.commit()
        return raw.state
    raw.state, raw.error, raw.attempts, raw.processed_at = states.NEW, None, 0, None
    db.add(raw)
    db.commit()
    return process_raw(db, raw_message_id, limits)
