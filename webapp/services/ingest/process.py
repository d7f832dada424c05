"""Process a stored raw message: parse → case or comment → contact. Idempotent.

Message.raw_message_id is unique, so processing the same row twice (a rerun after
SIGKILL, two workers) can never add a second comment. The attempt counter is committed
before parsing: a message that kills the worker every time is marked failed after
MAX_ATTEMPTS instead of blocking its mailbox forever.

A fetched batch is processed in few transactions. The attempts of all its fresh rows
are counted with one UPDATE and committed; then its messages are filed in one
transaction (committed at the latest every COMMIT_SECONDS, which bounds how long the
write lock is held), in windows of WINDOW messages whose lookups are asked once
(lookups.BatchLookups). The rows' states, their participants and the cases they move up
the lists are written when the transaction commits. If filing a message raises, if
PostgreSQL aborts the transaction (a deadlock with another worker), or if a row left NEW
meanwhile (a Reprocess), the transaction is rolled back and its rows are filed again one
at a time, each in its own SAVEPOINT (process_raw), so a bad message only ever fails
itself. A row attempted before (its batch was interrupted) is processed that way too.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from webapp.db import utcnow
from webapp.mail.parse import DEFAULT_LIMITS, ParseLimits
from webapp.mail.sync import Fetched
from webapp.models import Mailbox, Message, RawMessage, RawMessageBody
from webapp.models import message as states
from webapp.models.contact import email_key
from webapp.services import tasks as task_replies
from webapp.services.ingest import filing
from webapp.services.ingest import screening as intake
from webapp.services.ingest.lookups import BatchLookups, lookups
from webapp.services.ingest.parse_ahead import Outcome, ParseAhead, parse_one

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
COMMIT_SECONDS = 0.25  # a batch transaction commits at least this often
WINDOW = 25  # messages parsed, then looked up together (lookups.py), then filed


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


class _Run:
    """Values computed once per batch instead of once per message."""

    def __init__(self, db: Session, limits: ParseLimits | None) -> None:
        self.db, self.limits = db, limits
        self._mailboxes: dict[int, Mailbox | None] = {}
        self._own: set[str] | None = None

    def mailbox(self, mailbox_id: int) -> Mailbox | None:
        if mailbox_id not in self._mailboxes:
            self._mailboxes[mailbox_id] = self.db.get(Mailbox, mailbox_id)
        return self._mailboxes[mailbox_id]

    def parse(self, raw: RawMessage, data: bytes) -> Outcome:
        """Parse in this process, with the limits and marker of the row's mailbox."""
        mailbox = self.mailbox(raw.mailbox_id)
        return parse_one(data, self.limits or limits_for(mailbox), mailbox.end_of_message_marker)

    @property
    def own(self) -> set[str]:
        if self._own is None:
            self._own = filing.own_addresses(self.db)
        return self._own


def process_raw(db: Session, raw_id: int, limits: ParseLimits | None = None) -> str:
    """Turn one stored raw message into a case or a comment; returns its final state."""
    if not _start_attempt(db, raw_id):
        raw = db.get(RawMessage, raw_id)
        return raw.state if raw else "gone"
    try:
        _begin_batch(db)
        raw = db.exec(
            select(RawMessage)
            .where(col(RawMessage.id) == raw_id)
            .execution_options(populate_existing=True)
        ).one()
        data = db.exec(
            select(RawMessageBody.data).where(col(RawMessageBody.raw_message_id) == raw_id)
        ).first()
        state = _process(db, _Run(db, limits), raw, data)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return state


def _process(
    db: Session, run: _Run, raw: RawMessage, data: bytes | None, ahead: Outcome | None = None
) -> str:
    """File one counted row (not committed); its final state, or the state someone else set.

    `ahead` is what parse_ahead's helper made of `data` already.
    """
    mailbox = run.mailbox(raw.mailbox_id)
    if raw.attempts > MAX_ATTEMPTS:
        return _finish(
            db,
            raw,
            states.FAILED,
            f"processing was interrupted {MAX_ATTEMPTS} times "
            "(the worker died or timed out on this message); Reprocess to try again",
        )
    if data is not None and ahead is None:
        ahead = run.parse(raw, data)
    if (unfiled := _unfiled(raw, data, ahead)) is not None:
        return _finish(db, raw, *unfiled)
    try:
        return _file(db, run, mailbox, raw, ahead.parsed)
    except OperationalError:
        raise  # the database is unavailable: not this message's fault, the next run retries
    except Exception as exc:  # a bug, or a value the database refuses: keep the message, go on
        log.exception("filing raw message %s failed", raw.id)
        return _finish(
            db,
            raw,
            states.FAILED,
            f"unexpected {type(exc).__name__} while filing "
            f"the message: {str(exc)[:200]}; Reprocess after the fix",
        )


def _filed(
    db: Session, run: _Run, mailbox: Mailbox, raw: RawMessage, parsed
) -> tuple[str, str | None]:
    """File a parsed message (flushed, not committed); the state and error to record."""
    # A reply to a task-assignment email goes into the task's history, not a case.
    if task_replies.route_task_reply(db, mailbox, parsed, raw):
        return states.DONE, None
    ignored = filing.file_message(db, mailbox, raw, parsed, own=run.own)
    _test_delay()
    return (states.IGNORED if ignored else states.DONE), ignored


def _file(db: Session, run: _Run, mailbox: Mailbox, raw: RawMessage, parsed) -> str:
    for attempt in (1, 2):
        try:
            return _in_savepoint(db, raw, lambda: _filed(db, run, mailbox, raw, parsed))
        except IntegrityError:
            # A concurrent writer made the same contact or participant, or this row was
            # filed meanwhile: start over from what is committed now.
            if _already_filed(db, raw.id):
                return _finish(db, raw, states.DONE, None)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _outcome(
    db: Session, run: _Run, raw: RawMessage, data: bytes | None, ahead: Outcome | None
) -> tuple[str, str | None]:
    """File one fresh row of a batch, without a savepoint of its own; (state, error).

    Any exception means the batch is rolled back and filed again one row at a time
    (_Batch.replay), where a failing message fails alone.
    """
    if (unfiled := _unfiled(raw, data, ahead)) is not None:
        return unfiled
    return _filed(db, run, run.mailbox(raw.mailbox_id), raw, ahead.parsed)


def _unfiled(raw: RawMessage, data: bytes | None, ahead: Outcome | None) -> tuple[str, str] | None:
    """(state, error) of a row that cannot be filed: bytes missing, too large, unparsable."""
    if data is None or ahead is None:
        return states.FAILED, "the raw bytes of this message are missing"
    if ahead.too_large:
        return states.TOO_LARGE, ahead.too_large
    if ahead.error:
        log.info("raw message %s failed to parse: %s", raw.id, ahead.error)
        return states.FAILED, ahead.error
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


def _in_savepoint(db: Session, raw: RawMessage, work) -> str:
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
        lookups(db).invalidate()
        db.refresh(raw)
        return raw.state
    except BaseException:
        lookups(db).invalidate()  # the savepoint rolled back what filing noted
        raise
    return state


def _finish(db: Session, raw: RawMessage, state: str, error: str | None) -> str:
    """Record the outcome (not committed): the caller commits."""
    return _in_savepoint(db, raw, lambda: (state, error))


def _begin_batch(db: Session) -> None:
    """Open the batch transaction; on SQLite take the write lock now (BEGIN IMMEDIATE).

    pysqlite only begins a transaction before DML: a SAVEPOINT outside one would be
    the outermost transaction and its RELEASE would commit. BEGIN IMMEDIATE also
    waits for the lock (busy_timeout) instead of failing when a read snapshot must
    be upgraded after another writer committed.
    """
    connection = db.connection()
    if connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if not dbapi.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def process_ids(
    db: Session,
    raw_ids: list[int],
    limits: ParseLimits | None = None,
    check=None,
    ahead: ParseAhead | None = None,
    bodies: dict[int, bytes] | None = None,
) -> dict[str, int]:
    """Process rows in order; counts per final state. A failing message never stops the rest.

    `check()` runs between messages; `ahead` parses them in a helper process meanwhile;
    `bodies` are raw bytes the caller holds already (it just stored them), by row id.
    """
    counts: dict[str, int] = {}
    if not raw_ids:
        return counts
    run = _Run(db, limits)
    try:
        # Count an attempt on every row never attempted, in one statement, committed
        # before anything is parsed.
        fresh = set(
            db.exec(
                update(RawMessage.__table__)
                .where(
                    col(RawMessage.id).in_(raw_ids),
                    col(RawMessage.state) == states.NEW,
                    col(RawMessage.attempts) == 0,
                )
                .values(attempts=RawMessage.attempts + 1)
                .returning(RawMessage.__table__.c.id)
            ).scalars()
        )
        db.commit()
    except BaseException:
        db.rollback()
        raise
    rows: dict[int, RawMessage] = {}
    held, bodies = bodies or {}, {}
    if fresh:
        ids = sorted(fresh)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = (
                select(RawMessage)
                .where(col(RawMessage.id).in_(chunk))
                .execution_options(populate_existing=True)
            )
            rows.update({row.id: row for row in db.exec(query).all()})
            bodies.update({i: held[i] for i in chunk if i in held})
            if missing := [i for i in chunk if i not in held]:
                data = select(RawMessageBody.raw_message_id, RawMessageBody.data).where(
                    col(RawMessageBody.raw_message_id).in_(missing)
                )
                bodies.update(dict(db.exec(data).all()))
        db.commit()  # end the read transaction: the batch takes the write lock next
        if ahead is not None:
            first = run.mailbox(rows[ids[0]].mailbox_id)
            ahead.submit(
                [(_key(rows[i]), bodies[i]) for i in raw_ids if i in bodies and i in rows],
                limits or limits_for(first),
                first.end_of_message_marker,
            )
    found = BatchLookups(db)
    batch = _Batch(db, counts, found, limits)
    try:
        with found.installed():
            for start in range(0, len(raw_ids), WINDOW):
                window = raw_ids[start : start + WINDOW]
                outcomes = _parse_window(run, window, rows, bodies, ahead)
                if outcomes:
                    batch.begin()
                    _prefetch(found, window, outcomes)
                for raw_id in window:
                    if check is not None:
                        check()
                    raw = rows.get(raw_id)
                    if raw is None:  # attempted before, or not NEW: alone, with its own commits
                        batch.commit()
                        batch.alone(raw_id)
                        continue
                    batch.begin()
                    try:
                        data = bodies.pop(raw_id, None)
                        state, error = _outcome(db, run, raw, data, outcomes.get(raw_id))
                    except OperationalError as exc:
                        if not _conflict(exc):
                            raise  # the database is unavailable: the next run retries
                        batch.replay(raw_id)
                    except Exception:  # noqa: BLE001 - a bug or a refused value: this row fails alone
                        log.info("filing raw message %s raised: batch filed again row by row",
                                 raw_id, exc_info=True)  # fmt: skip
                        batch.replay(raw_id)
                    else:
                        batch.add(raw_id, state, error)
            batch.commit()
    except BaseException:
        db.rollback()
        raise
    return counts


def _key(raw: RawMessage) -> str | int:
    """What the parsing helper knows a message by: its content, so that the fetch can
    hand over the bytes before they are stored (parse_early)."""
    return raw.sha256 or raw.id


def parse_early(ahead: ParseAhead, mailbox: Mailbox, batch: list[Fetched]) -> None:
    """Start parsing a fetched batch in the helper while it is being stored."""
    ahead.submit(
        [(f.sha256, f.raw) for f in batch if f.raw is not None],
        limits_for(mailbox),
        mailbox.end_of_message_marker,
    )


def _parse_window(
    run: _Run,
    window: list[int],
    rows: dict[int, RawMessage],
    bodies: dict[int, bytes],
    ahead: ParseAhead | None,
) -> dict[int, Outcome]:
    """The parsed fresh rows of a window: from the parsing helper, or parsed here."""
    outcomes: dict[int, Outcome] = {}
    for raw_id in window:
        raw, data = rows.get(raw_id), bodies.get(raw_id)
        if raw is None or data is None:
            continue
        outcome = ahead.take(_key(raw)) if ahead is not None else None
        outcomes[raw_id] = outcome if outcome is not None else run.parse(raw, data)
    return outcomes


def _prefetch(found: BatchLookups, window: list[int], outcomes: dict[int, Outcome]) -> None:
    """Ask once for what filing the window's messages will ask (lookups.py)."""
    ids: list[str] = []
    senders: list[str] = []
    for outcome in outcomes.values():
        parsed = outcome.parsed
        if parsed is None:
            continue
        ids += filing.thread_ids(parsed)
        ids += intake.original_ids(parsed)
        ids += intake.confirmation_ids(parsed)
        senders.append(email_key(parsed.from_addr))
    found.prefetch(ids, senders, window)


def _count(counts: dict[str, int], state: str) -> None:
    counts[state] = counts.get(state, 0) + 1


def _conflict(exc: OperationalError) -> bool:
    """PostgreSQL gave up on the transaction (deadlock, serialization): redo it, smaller."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


class _Batch:
    """The rows filed in the open transaction; their states are written and counted when it
    commits, with what filing deferred (lookups.BatchLookups.write_pending)."""

    def __init__(self, db: Session, counts: dict[str, int], found: BatchLookups, limits) -> None:
        self.db, self.counts, self.found, self.limits = db, counts, found, limits
        self.rows: list[dict] = []
        self.opened: float | None = None

    def begin(self) -> None:
        if self.opened is None:
            _begin_batch(self.db)
            self.opened = time.monotonic()

    def add(self, raw_id: int, state: str, error: str | None) -> None:
        self.rows.append({"b_id": raw_id, "b_state": state, "b_error": error})
        if time.monotonic() - self.opened >= COMMIT_SECONDS:
            self.commit()

    def commit(self) -> None:
        if self.opened is None:
            return
        try:
            moved = not self._write()
        except OperationalError as exc:
            if not _conflict(exc):
                raise
            moved = True  # a deadlock on the held-back writes: roll back and file row by row
        if moved:
            self.replay(None)
            return
        for row in self.rows:
            _count(self.counts, row["b_state"])
        self.rows, self.opened = [], None

    def _write(self) -> bool:
        """Write what the batch held back and the rows' states, and commit; False (nothing
        committed) when a row left NEW meanwhile (a Reprocess): the caller replays."""
        self.found.write_pending()
        if self.rows:
            table = RawMessage.__table__
            record = (
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.state == states.NEW)
                .values(state=bindparam("b_state"), error=bindparam("b_error"),
                        processed_at=utcnow())
            )  # fmt: skip
            if self.db.exec(record, params=self.rows).rowcount != len(self.rows):
                return False
        self.db.commit()
        return True

    def alone(self, raw_id: int) -> None:
        """Process one row in its own transactions, with a savepoint around its filing."""
        with self.found.suspended():
            _count(self.counts, process_raw(self.db, raw_id, self.limits))

    def replay(self, raw_id: int | None) -> None:
        """Roll back the open transaction and file its rows (and `raw_id`) one by one.

        A message whose filing raised fails alone there; a deadlock with another worker
        (two PostgreSQL workers filing mail from the same senders) does not come back,
        because one row per transaction always locks in the same order."""
        replayed = [row["b_id"] for row in self.rows] + ([raw_id] if raw_id else [])
        log.info("batch transaction rolled back (%s rows), filing them one by one", len(replayed))
        self.db.rollback()
        self.found.discard()
        self.rows, self.opened = [], None
        for replayed_id in replayed:
            self.alone(replayed_id)


def process_pending(db: Session, mailbox_id: int, check=None) -> dict[str, int]:
    """Process every unprocessed raw row of a mailbox; `check()` runs between messages."""
    counts: dict[str, int] = {}
    seen: set[int] = set()
    while ids := [i for i in pending_ids(db, mailbox_id, limit=100) if i not in seen]:
        seen.update(ids)
        for state, count in process_ids(db, ids, check=check).items():
            counts[state] = counts.get(state, 0) + count
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
