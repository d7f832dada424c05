"""Database leases: at most one fetch of a mailbox at a time, whatever the number of workers.

A lease is a row (mailbox, holder, expires_at). It is taken with one atomic
statement (INSERT … ON CONFLICT DO NOTHING, or UPDATE … WHERE expires_at < now),
which SQLite and PostgreSQL both serialise, and renewed while the fetch runs, so
the lease of a worker killed with SIGKILL simply expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlmodel import Session

from webapp.db import insert_ignore, new_session, utcnow
from webapp.models import FetchLease

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 90


def lease_ttl() -> timedelta:
    """How long a lease lives unless renewed (MAILCHANNEL_LEASE_TTL seconds, for tests)."""
    return timedelta(seconds=float(os.environ.get("MAILCHANNEL_LEASE_TTL") or DEFAULT_TTL_SECONDS))


class LeaseLost(Exception):
    """Another worker holds the mailbox's lease now: stop without writing anything more."""


def new_holder() -> str:
    """A name unique to this process and this run."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def acquire(db: Session, mailbox_id: int, holder: str, ttl: timedelta | None = None) -> bool:
    """Take the mailbox's lease if it is free or expired; commits. True when we hold it."""
    return take(db, FetchLease.__table__, mailbox_id, holder, ttl or lease_ttl())


def take(db: Session, table, mailbox_id: int, holder: str, ttl: timedelta, **values) -> bool:
    """Take the row of `table` (a lease per mailbox) if it is free, expired or ours; commits."""
    now = utcnow()
    values.update(holder=holder, expires_at=now + ttl, acquired_at=now)
    # RETURNING, not rowcount: PostgreSQL drivers report -1 for INSERT … ON CONFLICT.
    inserted = (
        db.exec(
            insert_ignore(db, table)
            .values(mailbox_id=mailbox_id, **values)
            .returning(table.c.mailbox_id)
        ).first()
        is not None
    )
    if not inserted:
        inserted = (
            db.exec(
                update(table)
                .where(table.c.mailbox_id == mailbox_id)
                .where((table.c.expires_at < now) | (table.c.holder == holder))
                .values(**values)
            ).rowcount
            == 1
        )
    db.commit()
    return inserted


def renew(db: Session, mailbox_id: int, holder: str, ttl: timedelta | None = None) -> None:
    """Extend our lease inside the caller's transaction; raise LeaseLost if it is not ours.

    Called in the same transaction that stores a batch, so a worker that lost its
    lease cannot commit anything.
    """
    table = FetchLease.__table__
    renewed = db.exec(
        update(table)
        .where(table.c.mailbox_id == mailbox_id, table.c.holder == holder)
        .values(expires_at=utcnow() + (ttl or lease_ttl()))
    ).rowcount
    if renewed != 1:
        raise LeaseLost(f"the lease of mailbox {mailbox_id} is no longer held by {holder}")


def release(db: Session, mailbox_id: int, holder: str) -> None:
    table = FetchLease.__table__
    db.exec(delete(table).where(table.c.mailbox_id == mailbox_id, table.c.holder == holder))
    db.commit()


def held(db: Session, mailbox_id: int) -> bool:
    """True while some worker holds an unexpired lease on the mailbox."""
    table = FetchLease.__table__
    query = select(func.count()).where(
        table.c.mailbox_id == mailbox_id, table.c.expires_at >= utcnow()
    )
    return bool(db.exec(query).scalar_one())


class LeaseKeeper:
    """Renews a lease from a background thread while a long fetch runs.

    `lost` is set when the renewal finds the lease taken by someone else; the
    fetch checks it between batches (and every batch commit checks it again).
    """

    def __init__(
        self, database_url: str, mailbox_id: int, holder: str, ttl: timedelta | None = None
    ) -> None:
        self.database_url, self.mailbox_id, self.holder = database_url, mailbox_id, holder
        self.ttl = ttl or lease_ttl()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{mailbox_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"the lease of mailbox {self.mailbox_id} expired or was taken over")

    def _run(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                with new_session(self.database_url) as db:
                    renew(db, self.mailbox_id, self.holder, self.ttl)
                    db.commit()
            except LeaseLost:
                log.warning("lease of mailbox %s lost by %s", self.mailbox_id, self.holder)
                self.lost.set()
                return
            except Exception:  # noqa: BLE001 - a database hiccup: the next beat retries
                log.exception("renewing the lease of mailbox %s failed", self.mailbox_id)
