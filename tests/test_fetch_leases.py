"""Leases and uniqueness at the database level, on SQLite and (when it answers) PostgreSQL.

Two workers that both believe they may fetch a mailbox still cannot store a message
twice, file it twice, or give two cases the same number.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlmodel import col, select

from tests.helpers.messages import email
from webapp.db import new_session, utcnow
from webapp.mail.sync import Fetched
from webapp.models import Case, FetchLease, FetchRun, Mailbox, Message, RawMessage
from webapp.services.fetching import leases, store
from webapp.services.fetching.leases import LeaseLost
from webapp.services.ingest.rows import pending_ids, process_raw


def _bare_mailbox(url: str) -> int:
    with new_session(url) as db:
        box = Mailbox(name="Any", email_address="any@example.com", email_key="any@example.com")
        db.add(box)
        db.commit()
        return box.id


def test_the_lease_is_exclusive_renewable_and_expires(any_db):
    box = _bare_mailbox(any_db)
    with new_session(any_db) as a, new_session(any_db) as b:
        assert leases.acquire(a, box, "a")
        assert not leases.acquire(b, box, "b")
        assert leases.held(b, box)
        with pytest.raises(LeaseLost):
            leases.renew(b, box, "b")
        b.rollback()
        a.exec(select(FetchLease)).one().expires_at = utcnow() - timedelta(seconds=1)
        a.commit()
        assert not leases.held(b, box)
        assert leases.acquire(b, box, "b")
        with pytest.raises(LeaseLost):
            leases.renew(a, box, "a")
        a.rollback()
        leases.release(a, box, "a")  # not a's any more: nothing happens
        assert leases.held(a, box)
        leases.release(b, box, "b")
        assert not leases.held(a, box)


def test_a_lost_lease_cannot_commit_a_batch(any_db):
    box = _bare_mailbox(any_db)
    batch = [Fetched(size=10, raw=email(f"L{i}"), uidl=f"u{i}") for i in range(3)]
    with new_session(any_db) as db:
        assert leases.acquire(db, box, "a")
        run = FetchRun(mailbox_id=box, holder="a")
        db.add(run)
        db.commit()
        db.exec(select(FetchLease)).one().expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
        assert leases.acquire(db, box, "b")  # a's lease expired: b takes over
        mailbox = db.get(Mailbox, box)
        with pytest.raises(LeaseLost):
            store.store_batch(db, mailbox, run.id, "a", batch)
        assert db.exec(select(RawMessage)).all() == []  # a committed nothing
        assert len(store.store_batch(db, mailbox, run.id, "b", batch).new_ids) == 3
        assert store.store_batch(db, mailbox, run.id, "b", batch).new_ids == []  # same UIDLs
        assert len(db.exec(select(RawMessage)).all()) == 3


def test_concurrent_acquires_have_one_winner(any_db):
    box = _bare_mailbox(any_db)
    barrier = threading.Barrier(6)

    def take(name: str) -> bool:
        with new_session(any_db) as db:
            barrier.wait()
            return leases.acquire(db, box, name)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(take, [f"w{i}" for i in range(6)]))
    assert results.count(True) == 1


def test_concurrent_storing_and_processing_make_no_duplicates(any_db):
    box = _bare_mailbox(any_db)
    with new_session(any_db) as db:
        assert leases.acquire(db, box, "shared")  # both "workers" believe they hold it
        run = FetchRun(mailbox_id=box, holder="shared")
        db.add(run)
        db.commit()
        run_id = run.id
    batch = [
        Fetched(
            size=1,
            raw=email(f"Concurrent {i}", sender=f"c{i % 3}@example.org", message_id=f"<k{i}@x>"),
            uidl=f"k{i}",
        )
        for i in range(12)
    ]
    barrier = threading.Barrier(2)

    def worker(_: int) -> None:
        with new_session(any_db) as db:
            mailbox = db.get(Mailbox, box)
            barrier.wait()
            store.store_batch(db, mailbox, run_id, "shared", batch)
            for raw_id in db.exec(select(RawMessage.id).order_by(col(RawMessage.id))).all():
                process_raw(db, raw_id)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(worker, range(2)))
    with new_session(any_db) as db:
        assert pending_ids(db, box) == []
        assert len(db.exec(select(RawMessage)).all()) == 12
        assert len(db.exec(select(Message)).all()) == 12
        numbers = sorted(c.number for c in db.exec(select(Case)).all())
    assert len(set(numbers)) == 12
    if any_db.startswith("sqlite"):  # PostgreSQL's sequence leaves the loser's number unused
        assert numbers == list(range(1, 13))
