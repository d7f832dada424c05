"""File one stored raw message on its own: counted, parsed, routed and recorded in a savepoint.

Message.raw_message_id is unique, so processing the same row twice (a rerun after
SIGKILL, two workers) can never add a second comment. The attempt counter is committed
before parsing: a message that kills the worker every time is marked failed after
MAX_ATTEMPTS instead of blocking its mailbox forever. A row is filed on its own when
it is reprocessed, when it was attempted before, and when its batch (batch.py) was
rolled back; a bad message then only ever fails itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from webapp.db import begin_writing, utcnow
from webapp.mail.parse import ParsedMessage, ParseLimits
from webapp.models import Mailbox, Message, RawMessage, RawMessageBody
from webapp.models import message as states
from webapp.services.ingest import route
from webapp.services.ingest.lookups import Lookups
from webapp.services.ingest.parse_ahead import Outcome, limits_for, parse_one

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3

Filed = tuple[str, str | None]  # the state and the error recorded on the raw row


class Parser:
    """Parses rows with the limits and End of Message Marker of their mailbox (looked up once)."""

    def __init__(self, db: Session, limits: ParseLimits | None) -> None:
        self.db, self.limits = db, limits
        self._mailboxes: dict[int, Mailbox | None] = {}

    def mailbox(self, mailbox_id: int) -> Mailbox | None:
        if mailbox_id not in self._mailboxes:
            self._mailboxes[mailbox_id] = self.db.get(Mailbox, mailbox_id)
        return self._mailboxes[mailbox_id]

    def parse(self, raw: RawMessage, data: bytes) -> Outcome:
        """Parse in this process, with the limits and marker of the row's mailbox."""
        mailbox = self.mailbox(raw.mailbox_id)
        return parse_one(data, self.limits or limits_for(mailbox), mailbox.end_of_message_marker)


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
    try:
        begin_writing(db)
        raw = db.exec(
            select(RawMessage)
            .where(col(RawMessage.id) == raw_id)
            .execution_options(populate_existing=True)
        ).one()
        data = db.exec(
            select(RawMessageBody.data).where(col(RawMessageBody.raw_message_id) == raw_id)
        ).first()
        state = _process(db, Lookups(db), Parser(db, limits), raw, data)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return state


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


def _process(
    db: Session, found: Lookups, parser: Parser, raw: RawMessage, data: bytes | None
) -> str:
    """File one counted row (not committed); its final state, or the state someone else set."""
    if raw.attempts > MAX_ATTEMPTS:
        return _finish(
            db,
            found,
            raw,
            states.FAILED,
            f"processing was interrupted {MAX_ATTEMPTS} times "
            "(the worker died or timed out on this message); Reprocess to try again",
        )
    outcome = parser.parse(raw, data) if data is not None else None
    if (not_filed := unfiled(raw, data, outcome)) is not None:
        return _finish(db, found, raw, *not_filed)
    mailbox = parser.mailbox(raw.mailbox_id)
    try:
        return _file(db, found, mailbox, raw, outcome.parsed)
    except OperationalError:
        raise  # the database is unavailable: not this message's fault, the next run retries
    except Exception as exc:  # a bug, or a value the database refuses: keep the message, go on
        log.exception("filing raw message %s failed", raw.id)
        return _finish(
            db,
            found,
            raw,
            states.FAILED,
            f"unexpected {type(exc).__name__} while filing "
            f"the message: {str(exc)[:200]}; Reprocess after the fix",
        )


def file_parsed(
    db: Session, found: Lookups, mailbox: Mailbox, raw: RawMessage, parsed: ParsedMessage
) -> Filed:
    """Route a parsed message (flushed, not committed); the state and error to record."""
    filed = route.file_raw(db, found, mailbox, raw, parsed)
    _test_delay()
    return filed


def _file(
    db: Session, found: Lookups, mailbox: Mailbox, raw: RawMessage, parsed: ParsedMessage
) -> str:
    for attempt in (1, 2):
        try:
            return _in_savepoint(
                db, found, raw, lambda: file_parsed(db, found, mailbox, raw, parsed)
            )
        except IntegrityError:
            # A concurrent writer made the same contact or participant, or this row was
            # filed meanwhile: start over from what is committed now.
            if _already_filed(db, raw.id):
                return _finish(db, found, raw, states.DONE, None)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def unfiled(raw: RawMessage, data: bytes | None, outcome: Outcome | None) -> Filed | None:
    """(state, error) of a row that cannot be filed: bytes missing, too large, unparsable."""
    if data is None or outcome is None:
        return states.FAILED, "the raw bytes of this message are missing"
    if outcome.too_large:
        return states.TOO_LARGE, outcome.too_large
    if outcome.error:
        log.info("raw message %s failed to parse: %s", raw.id, outcome.error)
        return states.FAILED, outcome.error
    return None


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


class _NotNew(Exception):
    """The row left NEW meanwhile (a concurrent run finished it): undo this filing."""


def _in_savepoint(db: Session, found: Lookups, raw: RawMessage, work: Callable[[], Filed]) -> str:
    """Run `work` and record its outcome in one savepoint; only a NEW row changes state.

    If a concurrent run (Reprocess while a fetch job processes) finished the row
    first, the savepoint is rolled back and that run's outcome kept. An exception
    rolls back the savepoint alone and propagates.
    """
    try:
        with db.begin_nested():
            state, error = work()
            changed = db.exec(
                update(RawMessage)
                .where(col(RawMessage.id) == raw.id, col(RawMessage.state) == states.NEW)
                .values(state=state, error=error, processed_at=utcnow())
                .execution_options(synchronize_session=False)  # `raw` is refreshed on commit
            ).rowcount
            if changed != 1:
                raise _NotNew
    except _NotNew:
        found.invalidate()
        db.refresh(raw)
        return raw.state
    except BaseException:
        found.invalidate()  # the savepoint rolled back what filing noted
        raise
    return state


def _finish(db: Session, found: Lookups, raw: RawMessage, state: str, error: str | None) -> str:
    """Record the outcome (not committed): the caller commits."""
    return _in_savepoint(db, found, raw, lambda: (state, error))
