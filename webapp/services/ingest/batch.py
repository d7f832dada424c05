"""File a fetched batch of stored raw messages in few transactions.

The attempts of all the batch's fresh rows are counted with one UPDATE and committed;
then its messages are filed in one transaction (committed at the latest every
COMMIT_SECONDS, which bounds how long the write lock is held), in windows of WINDOW
messages: a window is parsed (by the parsing helper of parse_ahead.py when the fetch
started one), its lookups are asked once (lookups.BatchLookups), then each message is
routed (route.py). The rows' states, their participants and the cases they move up the
lists are written when the transaction commits.

If filing a message raises, if PostgreSQL aborts the transaction (a deadlock with
another worker), or if a row left NEW meanwhile (a Reprocess), the transaction is
rolled back and its rows are filed again one at a time (rows.py), so a bad message
only ever fails itself. A row attempted before (its batch was interrupted) is filed
that way too.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from sqlalchemy import bindparam, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from webapp.db import begin_writing, utcnow
from webapp.mail.parse import ParseLimits
from webapp.mail.sync import Fetched
from webapp.mail.thread import answered_ids, confirmation_ids
from webapp.models import Mailbox, RawMessage, RawMessageBody
from webapp.models import message as states
from webapp.models.contact import email_key
from webapp.services.ingest import claims, matching, rows
from webapp.services.ingest.lookups import BatchLookups
from webapp.services.ingest.parse_ahead import Outcome, ParseAhead, limits_for
from webapp.yielding import give_way

log = logging.getLogger(__name__)

COMMIT_SECONDS = 0.25  # a batch transaction commits at least this often
WINDOW = 25  # messages parsed, then looked up together (lookups.py), then filed
_LOAD_CHUNK = 500  # rows read per SELECT


def process_ids(
    db: Session,
    raw_ids: list[int],
    limits: ParseLimits | None = None,
    check: Callable[[], None] | None = None,
    ahead: ParseAhead | None = None,
    bodies: dict[int, bytes] | None = None,
    order: claims.Order | None = None,
) -> dict[str, int]:
    """Process rows in order; counts per final state. A failing message never stops the rest.

    `check()` runs between messages; `ahead` parses them in a helper process meanwhile;
    `bodies` are raw bytes the caller holds already (it just stored them), by row id;
    `order` (claims.py) holds back a reply until the message it answers, which another
    worker claimed, is filed.
    """
    counts: dict[str, int] = {}
    if not raw_ids:
        return counts
    parser = rows.Parser(db, limits)
    fresh = _count_attempts(db, raw_ids)
    loaded, data = _load(db, sorted(fresh), bodies or {})
    if loaded and ahead is not None:
        first = parser.mailbox(loaded[min(fresh)].mailbox_id)
        ahead.submit(
            [(_key(loaded[i]), data[i]) for i in raw_ids if i in data and i in loaded],
            limits or limits_for(first),
            first.end_of_message_marker,
        )
    found = BatchLookups(db)
    batch = _Batch(db, counts, found, limits)
    try:
        for start in range(0, len(raw_ids), WINDOW):
            window = raw_ids[start : start + WINDOW]
            outcomes = _parse_window(parser, window, loaded, data, ahead)
            blocked = order.blockers(window, outcomes) if order is not None else {}
            if outcomes:
                batch.begin()
                _prefetch(found, window, outcomes)
            for raw_id in window:
                if check is not None:
                    check()
                give_way(batch.commit)  # pages are answered here: commit, then wait for them
                if raw_id in blocked:
                    batch.commit()  # let the other claimant write (SQLite's one write lock)
                    order.wait_for(blocked[raw_id])
                    found.invalidate()  # the window's answers predate what it filed
                _file_one(db, batch, parser, raw_id, loaded.get(raw_id), data, outcomes)
        batch.commit()
    except BaseException:
        db.rollback()
        raise
    return counts


def process_pending(
    db: Session,
    mailbox_id: int,
    check: Callable[[], None] | None = None,
    *,
    holder: str | None = None,
    ahead: ParseAhead | None = None,
    bodies: dict[int, bytes] | None = None,
    budget: int | None = None,
    fetch: bool = False,
) -> dict[str, int]:
    """Claim the mailbox's unprocessed rows nobody holds, oldest first, a chunk at a time
    (claims.py), and file them, until none is left to claim or `budget` rows were claimed.

    Rows another worker holds are left to it; `check()` runs between messages; `fetch`:
    the caller holds the mailbox's fetch lease.
    """
    holder = holder or claims.filing_holder(uuid.uuid4().hex[:16])
    counts: dict[str, int] = {}
    taken = 0
    while budget is None or taken < budget:
        limit = claims.CLAIM_ROWS if budget is None else min(claims.CLAIM_ROWS, budget - taken)
        ids = claims.claim(db, mailbox_id, holder, limit, fetch)
        if not ids:
            break
        taken += len(ids)
        order = claims.Order(
            db, mailbox_id, holder, ids, check, lambda raw_id: rows.process_raw(db, raw_id)
        )
        try:
            filed = process_ids(db, ids, check=check, ahead=ahead, bodies=bodies, order=order)
        except BaseException:
            with contextlib.suppress(Exception):  # the database may be gone: claims expire
                claims.release(db, ids, holder)
            raise
        for state, count in filed.items():
            counts[state] = counts.get(state, 0) + count
    return counts


def parse_early(ahead: ParseAhead, mailbox: Mailbox, batch: list[Fetched]) -> None:
    """Start parsing a fetched batch in the helper while it is being stored."""
    ahead.submit(
        [(f.sha256, f.raw) for f in batch if f.raw is not None],
        limits_for(mailbox),
        mailbox.end_of_message_marker,
    )


def _count_attempts(db: Session, raw_ids: list[int]) -> set[int]:
    """Count an attempt on every row never attempted, in one statement, committed before
    anything is parsed; the ids of those fresh rows."""
    try:
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
    return fresh


def _load(
    db: Session, ids: list[int], held: dict[int, bytes]
) -> tuple[dict[int, RawMessage], dict[int, bytes]]:
    """The fresh rows and their bytes (from `held` where the caller has them already)."""
    loaded: dict[int, RawMessage] = {}
    data: dict[int, bytes] = {}
    if not ids:
        return loaded, data
    for start in range(0, len(ids), _LOAD_CHUNK):
        chunk = ids[start : start + _LOAD_CHUNK]
        query = (
            select(RawMessage)
            .where(col(RawMessage.id).in_(chunk))
            .execution_options(populate_existing=True)
        )
        loaded.update({row.id: row for row in db.exec(query).all()})
        data.update({i: held[i] for i in chunk if i in held})
        if missing := [i for i in chunk if i not in held]:
            bodies = select(RawMessageBody.raw_message_id, RawMessageBody.data).where(
                col(RawMessageBody.raw_message_id).in_(missing)
            )
            data.update(dict(db.exec(bodies).all()))
    db.commit()  # end the read transaction: the batch takes the write lock next
    return loaded, data


def _file_one(
    db: Session,
    batch: _Batch,
    parser: rows.Parser,
    raw_id: int,
    raw: RawMessage | None,
    data: dict[int, bytes],
    outcomes: dict[int, Outcome],
) -> None:
    """File one row of the batch in the open transaction, without a savepoint of its own.

    Any exception means the batch is rolled back and filed again one row at a time
    (_Batch.replay), where a failing message fails alone.
    """
    if raw is None:  # attempted before, or not NEW: alone, with its own commits
        batch.commit()
        batch.alone(raw_id)
        return
    batch.begin()
    try:
        body = data.pop(raw_id, None)
        outcome = outcomes.get(raw_id)
        state, error = rows.unfiled(raw, body, outcome) or rows.file_parsed(
            db, batch.found, parser.mailbox(raw.mailbox_id), raw, outcome.parsed
        )
    except OperationalError as exc:
        if not _conflict(exc):
            raise  # the database is unavailable: the next run retries
        batch.replay(raw_id)
    except Exception:  # noqa: BLE001 - a bug or a refused value: this row fails alone
        log.info(
            "filing raw message %s raised: batch filed again row by row", raw_id, exc_info=True
        )
        batch.replay(raw_id)
    else:
        batch.add(raw_id, state, error)


def _key(raw: RawMessage) -> str | int:
    """What the parsing helper knows a message by: its content, so that the fetch can
    hand over the bytes before they are stored (parse_early)."""
    return raw.sha256 or raw.id


def _parse_window(
    parser: rows.Parser,
    window: list[int],
    loaded: dict[int, RawMessage],
    data: dict[int, bytes],
    ahead: ParseAhead | None,
) -> dict[int, Outcome]:
    """The parsed fresh rows of a window: from the parsing helper, or parsed here."""
    outcomes: dict[int, Outcome] = {}
    for raw_id in window:
        raw, body = loaded.get(raw_id), data.get(raw_id)
        if raw is None or body is None:
            continue
        outcome = ahead.take(_key(raw)) if ahead is not None else None
        outcomes[raw_id] = outcome if outcome is not None else parser.parse(raw, body)
    return outcomes


def _prefetch(found: BatchLookups, window: list[int], outcomes: dict[int, Outcome]) -> None:
    """Ask once for what filing the window's messages will ask (lookups.py)."""
    ids: list[str] = []
    senders: list[str] = []
    own: list[str] = []
    for outcome in outcomes.values():
        parsed = outcome.parsed
        if parsed is None:
            continue
        if parsed.message_id:
            own.append(parsed.message_id[:998])
        ids += answered_ids(parsed)
        ids += matching.original_ids(parsed)
        ids += confirmation_ids(parsed)
        senders.append(email_key(parsed.from_addr))
    found.prefetch(ids, senders, window, own)


def _conflict(exc: OperationalError) -> bool:
    """PostgreSQL gave up on the transaction (deadlock, serialization): redo it, smaller."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


class _Batch:
    """The rows filed in the open transaction; their states are written and counted when it
    commits, with what filing deferred (lookups.BatchLookups.write_pending)."""

    def __init__(
        self, db: Session, counts: dict[str, int], found: BatchLookups, limits: ParseLimits | None
    ) -> None:
        self.db, self.counts, self.found, self.limits = db, counts, found, limits
        self.rows: list[dict] = []
        self.opened: float | None = None

    def begin(self) -> None:
        if self.opened is None:
            begin_writing(self.db)
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
            self._count(row["b_state"])
        self.rows, self.opened = [], None

    def _count(self, state: str) -> None:
        self.counts[state] = self.counts.get(state, 0) + 1

    def _write(self) -> bool:
        """Write what the batch held back and the rows' states, and commit; False (nothing
        committed) when a row left NEW meanwhile (a Reprocess): the caller replays."""
        self.found.write_pending()
        if self.rows:
            table = RawMessage.__table__
            record = (
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.state == states.NEW)
                .values(
                    state=bindparam("b_state"), error=bindparam("b_error"), processed_at=utcnow()
                )
            )
            if self.db.exec(record, params=self.rows).rowcount != len(self.rows):
                return False
        self.db.commit()
        return True

    def alone(self, raw_id: int) -> None:
        """Process one row in its own transactions, with a savepoint around its filing; it
        asks and writes directly, so what the batch's lookups noted is forgotten after it."""
        try:
            self._count(rows.process_raw(self.db, raw_id, self.limits))
        finally:
            self.found.invalidate()

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
