"""Watch leases: which watcher listens to which mailbox, shared through the database.

Like fetch leases (services/fetching/leases.py): a row per mailbox, taken atomically,
renewed by its holder every few seconds, so the mailboxes of a watcher killed with SIGKILL
are free again once its leases expire (20 s). Each watcher also beats a heartbeat row, and
takes at most ceil(N / live watchers) of the N watchable mailboxes: two watchers split them,
and one left alone takes them all once the other's heartbeat is stale.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlmodel import Session, col

from webapp.db import insert_ignore, utcnow
from webapp.models import Watcher, WatchLease
from webapp.services.fetching.leases import take

DEFAULT_TTL_SECONDS = 20


def lease_ttl() -> timedelta:
    """MAILCHANNEL_WATCH_LEASE_TTL seconds (20 by default): how long a silent watcher keeps a box."""
    return timedelta(
        seconds=float(os.environ.get("MAILCHANNEL_WATCH_LEASE_TTL") or DEFAULT_TTL_SECONDS)
    )


def heartbeat(db: Session, holder: str) -> None:
    """Say this watcher is alive; forget watchers silent for an hour. Commits."""
    now = utcnow()
    table = Watcher.__table__
    db.exec(insert_ignore(db, table).values(holder=holder, started_at=now, heartbeat_at=now))
    db.exec(update(table).where(table.c.holder == holder).values(heartbeat_at=now))
    db.exec(delete(table).where(table.c.heartbeat_at < now - timedelta(hours=1)))
    db.commit()


def live_watchers(db: Session, now: datetime | None = None) -> int:
    """Watchers whose heartbeat is younger than a lease's lifetime (at least 1: ourselves)."""
    since = (now or utcnow()) - lease_ttl()
    count = db.exec(select(func.count()).where(Watcher.__table__.c.heartbeat_at >= since))
    return max(1, int(count.scalar_one()))


def fair_share(watchable: int, live: int) -> int:
    """How many mailboxes one of `live` watchers may hold: ceil(N / live)."""
    return math.ceil(watchable / max(live, 1))


def leave(db: Session, holder: str) -> None:
    """A watcher stopping cleanly: its heartbeat and leases go at once. Commits."""
    db.exec(delete(Watcher.__table__).where(Watcher.__table__.c.holder == holder))
    db.exec(delete(WatchLease.__table__).where(WatchLease.__table__.c.holder == holder))
    db.commit()


def acquire(db: Session, mailbox_id: int, holder: str) -> bool:
    """Take the mailbox's watch lease if it is free or expired; commits. True when we hold it."""
    table = WatchLease.__table__
    return take(db, table, mailbox_id, holder, lease_ttl(), watching_since=None)


def renew_all(db: Session, holder: str) -> set[int]:
    """Extend every lease we still hold; the ids we hold. Commits."""
    table = WatchLease.__table__
    now = utcnow()
    db.exec(
        update(table)
        .where(table.c.holder == holder, table.c.expires_at >= now)
        .values(expires_at=now + lease_ttl())
    )
    db.commit()
    held = db.exec(
        select(table.c.mailbox_id).where(table.c.holder == holder, table.c.expires_at >= now)
    )
    return set(held.scalars().all())


def taken_by_others(db: Session, holder: str) -> set[int]:
    """Mailboxes another watcher listens to now."""
    table = WatchLease.__table__
    rows = db.exec(
        select(table.c.mailbox_id).where(table.c.holder != holder, table.c.expires_at >= utcnow())
    )
    return set(rows.scalars().all())


def release(db: Session, mailbox_id: int, holder: str) -> None:
    """Stop watching: the row (and what the page showed of push) goes. Commits."""
    table = WatchLease.__table__
    db.exec(delete(table).where(table.c.mailbox_id == mailbox_id, table.c.holder == holder))
    db.commit()


def watched_ids(now: datetime):
    """SELECT of the mailboxes a live watcher listens to in IDLE now (for the poll schedule)."""
    return select(WatchLease.mailbox_id).where(
        col(WatchLease.expires_at) >= now, col(WatchLease.watching_since).is_not(None)
    )
