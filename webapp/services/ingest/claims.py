"""Filing stored mail on every worker: raw rows claimed in chunks, oldest first.

A mailbox's IMAP/POP3 connection stays single-flight (its fetch lease, store first);
what it stored is filed by whichever worker claims it. A claim is two columns of the
raw row, `claimed_by` and `claimed_until`, written with one UPDATE of the oldest NEW
rows nobody holds (on PostgreSQL their SELECT is FOR UPDATE SKIP LOCKED, so claimers
never wait for each other's rows). A claim lives as long as a fetch lease
(leases.lease_ttl): the rows of a worker killed mid-chunk are taken over by whoever
looks after that, the next fetch, a filing job or a claimant waiting for one of them.

Why not the row locks alone (SELECT … FOR UPDATE SKIP LOCKED held by the filing
transaction, gone with a dead worker's connection)? The attempt of a row is committed
before it is parsed, so that a message that kills its worker every time is marked
failed after rows.MAX_ATTEMPTS, and a batch commits every batch.COMMIT_SECONDS to
bound its locks: the filing of a chunk spans several transactions, and row locks do
not. The price is that a dead worker's rows wait for its claim to expire (a fetch's
lease waits as long), except that a fetch takes over at once what an earlier fetch of
its mailbox claimed: holding the lease, it knows that one is gone. The same claim serves SQLite, where writers take turns anyway:
workers there still parse in parallel and take turns only to write.

Exactly once does not depend on the claims: a row changes state only while NEW and a
message is unique per raw row (rows.py). A claim only says who should do the work.

Threading order (`Order`): a claimant files a reply only once the message it answers
(In-Reply-To/References) or an earlier copy of it (the same Message-ID), stored in the
same mailbox under a lower id, is filed: it commits what it filed so far and waits
for the other claimant, or files that row itself once its claim expired. It waits only
for lower ids, so two claimants never wait for each other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import func, not_, or_, select, update
from sqlmodel import Session

from webapp.db import utcnow
from webapp.mail.thread import answered_ids
from webapp.models import RawMessage
from webapp.models import message as states
from webapp.services.fetching.leases import lease_ttl
from webapp.services.ingest.parse_ahead import Outcome

log = logging.getLogger(__name__)

FILING = "filing:"  # the claims of filing jobs start so; the others are a fetch's
CLAIM_ROWS = 50  # rows per claim: a few windows of batch.py, filed in well under a second
POLL_SECONDS = 0.05  # how often a claimant waiting for another one looks again
_CHUNK = 500  # values per IN (…)

_RAW = RawMessage.__table__


def filing_holder(holder: str) -> str:
    """The claimant name of a filing job (not a fetch)."""
    return FILING + holder


def _free(now, fetch: bool = False):
    """A row nobody holds: never claimed, or its claimant's time is up. For a fetch (it holds
    the mailbox's lease) also a row an earlier fetch claimed: that one is dead."""
    free = [_RAW.c.claimed_until.is_(None), _RAW.c.claimed_until < now]
    if fetch:
        free.append(not_(_RAW.c.claimed_by.startswith(FILING)))
    return or_(*free)


def claim(
    db: Session, mailbox_id: int, holder: str, limit: int = CLAIM_ROWS, fetch: bool = False
) -> list[int]:
    """Claim the oldest NEW rows of the mailbox that nobody holds; their ids, in order
    (committed). `fetch`: the caller holds the mailbox's fetch lease."""
    now = utcnow()
    oldest = (
        select(_RAW.c.id)
        .where(_RAW.c.mailbox_id == mailbox_id, _RAW.c.state == states.NEW, _free(now, fetch))
        .order_by(_RAW.c.id)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        oldest = oldest.with_for_update(skip_locked=True)
    return _take(db, _RAW.c.id.in_(oldest.scalar_subquery()), holder=holder, now=now)


def claim_rows(db: Session, raw_ids: list[int], holder: str) -> list[int]:
    """Claim these rows where they are NEW and nobody holds them; the ids claimed (committed)."""
    now = utcnow()
    free = [_RAW.c.id.in_(raw_ids), _RAW.c.state == states.NEW, _free(now)]
    return _take(db, *free, holder=holder, now=now) if raw_ids else []


def _take(db: Session, *where, holder: str, now) -> list[int]:
    try:
        taken = db.exec(
            update(_RAW)
            .where(*where)
            .values(claimed_by=holder, claimed_until=now + lease_ttl())
            .returning(_RAW.c.id)
        ).scalars()
        ids = sorted(taken)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return ids


def release(db: Session, raw_ids: list[int], holder: str) -> None:
    """Give back what this holder claimed and did not file (it stops early)."""
    if not raw_ids:
        return
    db.rollback()
    db.exec(
        update(_RAW)
        .where(_RAW.c.id.in_(raw_ids), _RAW.c.claimed_by == holder, _RAW.c.state == states.NEW)
        .values(claimed_by=None, claimed_until=None)
    )
    db.commit()


def claimable(db: Session, mailbox_id: int) -> int:
    """How many NEW rows of the mailbox nobody holds (committed reads only)."""
    query = select(func.count()).where(
        _RAW.c.mailbox_id == mailbox_id, _RAW.c.state == states.NEW, _free(utcnow())
    )
    count = db.exec(query).scalar_one()
    db.commit()
    return int(count)


def unfiled(db: Session, mailbox_id: int) -> bool:
    """Whether the mailbox has NEW rows, claimed or not (committed reads only)."""
    query = select(_RAW.c.id).where(_RAW.c.mailbox_id == mailbox_id, _RAW.c.state == states.NEW)
    found = db.exec(query.limit(1)).first() is not None
    db.commit()
    return found


class Order:
    """The threading order of one claimant: which rows must wait, and the waiting."""

    def __init__(
        self,
        db: Session,
        mailbox_id: int,
        holder: str,
        claimed: list[int],
        check: Callable[[], None] | None = None,
        file_alone: Callable[[int], object] | None = None,
    ) -> None:
        self.db, self.mailbox_id, self.holder = db, mailbox_id, holder
        self.claimed = set(claimed)
        self.check = check
        self.file_alone = file_alone

    def blockers(self, window: list[int], outcomes: dict[int, Outcome]) -> dict[int, list[int]]:
        """Row id -> the lower NEW rows of this mailbox, not ours, that it must be filed after:
        those it answers or copies. A row not parsed here (attempted before: a worker died
        on its chunk) waits for every lower row, since what it answers is not known."""
        wanted: dict[int, set[str]] = {}
        unparsed: list[int] = []
        for raw_id in window:
            outcome = outcomes.get(raw_id)
            parsed = outcome.parsed if outcome is not None else None
            if outcome is None:
                unparsed.append(raw_id)
            if parsed is None:
                continue
            ids = set(answered_ids(parsed))
            if parsed.message_id:
                ids.add(parsed.message_id[:998])
            if ids:
                wanted[raw_id] = ids
        pending = self._pending(wanted, max(unparsed, default=0))
        out: dict[int, list[int]] = {}
        for raw_id in window:
            ids = wanted.get(raw_id, set())
            lower = [
                i
                for i, message_id in pending
                if i < raw_id and (raw_id in unparsed or message_id in ids)
            ]
            if lower:
                out[raw_id] = sorted(lower)
        return out

    def _pending(self, wanted: dict[int, set[str]], below: int) -> list[tuple[int, str | None]]:
        """(id, Message-ID) of the NEW rows not ours with one of these Message-IDs, or
        with an id under `below`."""
        every = sorted(set().union(*wanted.values())) if wanted else []
        base = select(_RAW.c.id, _RAW.c.message_id).where(
            _RAW.c.mailbox_id == self.mailbox_id, _RAW.c.state == states.NEW
        )
        found: set[tuple[int, str | None]] = set()
        if below:
            found.update(tuple(r) for r in self.db.exec(base.where(_RAW.c.id < below)).all())
        for start in range(0, len(every), _CHUNK):
            query = base.where(
                _RAW.c.id < max(wanted), _RAW.c.message_id.in_(every[start : start + _CHUNK])
            )
            found.update(tuple(r) for r in self.db.exec(query).all())
        return [row for row in found if row[0] not in self.claimed]

    def wait_for(self, raw_ids: list[int]) -> None:
        """Until these rows are filed; a row whose claimant is gone is filed here (alone).

        Called with no transaction open (the batch committed what it filed so far)."""
        waited = time.monotonic()
        while True:
            now = utcnow()
            rows = self.db.exec(
                select(_RAW.c.id, _free(now)).where(
                    _RAW.c.id.in_(raw_ids), _RAW.c.state == states.NEW
                )
            ).all()
            self.db.commit()
            if not rows:
                break
            orphans = claim_rows(self.db, [i for i, free in rows if free], self.holder)
            for raw_id in orphans:
                log.info("raw message %s: its claimant is gone, filed here", raw_id)
                if self.file_alone is not None:
                    self.file_alone(raw_id)
            if not orphans:
                if self.check is not None:
                    self.check()
                time.sleep(POLL_SECONDS)
        log.debug("waited %.3f s for rows %s", time.monotonic() - waited, raw_ids)
