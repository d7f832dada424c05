"""One mailbox's stored mail filed by several workers: claims, threading order, SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from rq import Worker
from sqlalchemy import update
from sqlmodel import col, select

from tests.helpers.databases import ON_BOTH
from tests.helpers.mailboxes import fetch, make_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import counts, raws, runs, snapshot, store
from tests.test_fetch_robustness import (
    _deliver_threads,
    _fetch_until_not_busy,
    _kill,
    _reference,
    _spawn,
    _wait_for,
    rq_worker_args,
)
from tests.test_ingest_batches import _mailbox
from webapp.db import new_session, utcnow
from webapp.models import Case, FetchLease, Mailbox, Message, RawMessage
from webapp.queue import get_queue
from webapp.services.fetching.schedule import request_fetch
from webapp.services.fetching.store import summary
from webapp.services.ingest import claims
from webapp.services.ingest.batch import process_ids, process_pending
from worker.jobs import sweep


def _stored(db, box: Mailbox, raw: bytes) -> int:
    """A raw row as a fetch stores it, its Message-ID read from the header block."""
    raw_id = store(db, box, raw)
    db.exec(
        update(RawMessage).where(col(RawMessage.id) == raw_id).values(message_id=summary(raw)[0])
    )
    db.commit()
    return raw_id


def _thread(db, box: Mailbox) -> tuple[int, int]:
    parent = _stored(db, box, email("Printer jammed", sender="ada@example.org", message_id="<p@x>"))
    reply = _stored(db, box, email("Re: Printer jammed", sender="ada@example.org",
                                   message_id="<r@x>", in_reply_to="<p@x>"))  # fmt: skip
    return parent, reply


def _cases_of(db) -> dict[str, int]:
    return dict(db.exec(select(Message.subject, Message.case_id)).all())


def _state(url: str, raw_id: int) -> str:
    with new_session(url) as db:
        return db.get(RawMessage, raw_id).state


@ON_BOTH
def test_two_claimants_never_hold_the_same_row(database_url):
    with new_session(database_url) as db:
        box = _mailbox(db)
        ids = [_stored(db, box, email(f"M{i}", sender=f"s{i}@x.example")) for i in range(10)]
    with new_session(database_url) as a, new_session(database_url) as b:
        first = claims.claim(a, box.id, "a", 4)
        second = claims.claim(b, box.id, "b", 4)
        third = claims.claim(a, box.id, "a", 4)
        fourth = claims.claim(b, box.id, "b", 4)
    assert first == ids[:4]
    assert second == ids[4:8]
    assert third == ids[8:]
    assert fourth == []


@pytest.mark.postgres
def test_on_postgresql_a_claim_skips_rows_another_claim_is_taking(postgres_url):
    with new_session(postgres_url) as db:
        box = _mailbox(db)
        ids = [_stored(db, box, email(f"M{i}", sender=f"s{i}@x.example")) for i in range(6)]
    with new_session(postgres_url) as busy, new_session(postgres_url) as other:
        busy.exec(select(RawMessage.id).where(col(RawMessage.id).in_(ids[:3])).with_for_update())
        other.connection().exec_driver_sql("SET lock_timeout = '1s'")  # fail rather than wait
        taken = claims.claim(other, box.id, "other", 3)
        busy.rollback()
    assert taken == ids[3:]


@ON_BOTH
def test_a_dead_claimants_rows_are_taken_over_when_its_claim_expires(database_url, monkeypatch):
    monkeypatch.setenv("MAILCHANNEL_LEASE_TTL", "1")
    with new_session(database_url) as db:
        box = _mailbox(db)
        ids = [_stored(db, box, email(f"M{i}", sender=f"s{i}@x.example")) for i in range(3)]
        assert claims.claim(db, box.id, claims.filing_holder("dead"), 10) == ids  # then killed
        assert process_pending(db, box.id) == {}  # still held
        time.sleep(1.2)
        assert process_pending(db, box.id) == {"done": 3}


@ON_BOTH
@pytest.mark.parametrize("stored", ["in one batch", "in two batches"])
def test_a_reply_filed_by_another_worker_waits_for_its_parent(database_url, stored):
    """The parent's claimant is still busy when the reply's claimant reaches the reply."""
    with new_session(database_url) as db:
        box = _mailbox(db)
        if stored == "in one batch":
            parent, reply = _thread(db, box)
            assert claims.claim(db, box.id, "slow worker", 1) == [parent]
        else:
            parent = _stored(db, box, email("Printer jammed", sender="ada@example.org",
                                            message_id="<p@x>"))  # fmt: skip
            assert claims.claim(db, box.id, "slow worker", 1) == [parent]
            reply = _stored(db, box, email("Re: Printer jammed", sender="ada@example.org",
                                           message_id="<r@x>", in_reply_to="<p@x>"))  # fmt: skip
    results: dict = {}

    def other_worker() -> None:
        with new_session(database_url) as other:
            results["counts"] = process_pending(other, box.id)

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        time.sleep(0.5)
        waiting = _state(database_url, reply)
        with new_session(database_url) as db:
            assert process_ids(db, [parent]) == {"done": 1}  # the slow worker gets to it
    finally:
        thread.join(30)
    with new_session(database_url) as db:
        cases = _cases_of(db)
        numbers = db.exec(select(Case.number)).all()
    assert waiting == "new"
    assert results["counts"] == {"done": 1}
    assert cases["Re: Printer jammed"] == cases["Printer jammed"]
    assert len(numbers) == 1


@ON_BOTH
def test_a_reply_whose_parents_claimant_died_files_the_parent_first(database_url, monkeypatch):
    monkeypatch.setenv("MAILCHANNEL_LEASE_TTL", "1")
    with new_session(database_url) as db:
        box = _mailbox(db)
        parent, reply = _thread(db, box)
        assert claims.claim(db, box.id, claims.filing_holder("killed"), 1) == [parent]
        assert claims.claim(db, box.id, "alive", 1) == [reply]
        claimed = [reply]
        order = claims.Order(db, box.id, "alive", claimed, None, lambda i: process_ids(db, [i]))
        assert process_ids(db, claimed, order=order) == {"done": 1}
        cases = _cases_of(db)
        states = [db.get(RawMessage, i).state for i in (parent, reply)]
    assert states == ["done", "done"]
    assert cases["Re: Printer jammed"] == cases["Printer jammed"]


@ON_BOTH
def test_a_fetch_takes_over_at_once_what_an_earlier_fetch_claimed(database_url):
    with new_session(database_url) as db:
        box = _mailbox(db)
        ids = [_stored(db, box, email(f"M{i}", sender=f"s{i}@x.example")) for i in range(2)]
        assert claims.claim(db, box.id, "host:1:killed-fetch", 10) == ids
        assert claims.claim(db, box.id, claims.filing_holder("job"), 10) == []
        assert process_pending(db, box.id, holder="host:2:next-fetch", fetch=True) == {"done": 2}


def _kill_holder(holder: str) -> None:
    """SIGKILL the process named in a claim or lease holder (host:pid:…)."""
    pid = int(holder.removeprefix(claims.FILING).split(":")[1])
    os.kill(pid, signal.SIGKILL)


# -- real rq workers, one mailbox ---------------------------------------------------------


def _rq_worker(app_env: dict, env: dict):
    return _spawn(rq_worker_args(app_env, "-c", "worker.settings"), env)  # as the Procfile


def _rq_workers(app_env: dict, env: dict, count: int = 2) -> list:
    """`count` rq workers, listening (registered) before anything is enqueued."""
    workers = [_rq_worker(app_env, env) for _ in range(count)]
    queue = get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    _wait_for(lambda: len(Worker.all(queue=queue)) >= count, "the rq workers")
    return workers


def _unfiled(app_env: dict, box: int) -> int:
    return sum(1 for r in raws(app_env, box) if r.state == "new")


def _filed_by_jobs(app_env: dict, box: int) -> int:
    rows = raws(app_env, box)
    return sum(1 for r in rows if r.state == "done" and (r.claimed_by or "").startswith("filing:"))


def _same_threads(app_env: dict, box: int, expected: dict) -> None:
    got = snapshot(app_env, box)
    assert got["raw"] == expected["raw"]
    assert sorted(got["cases"]) == sorted(expected["cases"])  # numbered in filing order
    once = counts(app_env, box)
    assert once["raw"] == once["messages"] == once["message_raw_ids"]


@pytest.fixture
def parallel_env(app_env, monkeypatch) -> dict:
    monkeypatch.setenv("MAILCHANNEL_LEASE_TTL", "2")
    return {
        **os.environ,
        "MAILCHANNEL_FETCH_BATCH_SIZE": "10",
        "MAILCHANNEL_TEST_PROCESS_DELAY": "0.1",  # filing is the slow part, as in a big fetch
        "MAILCHANNEL_LEASE_TTL": "2",
        "MAILCHANNEL_SHARED_FILING": "1",  # off by default (services/ingest/shared.py)
    }


@contextlib.contextmanager
def _fetching(app_env: dict, env: dict, tmp_path, dovecot, user):
    """60 messages in threads and what one process alone files of them (the reference),
    then their first fetch requested, with two rq workers listening: (mailbox, reference)."""
    _deliver_threads(user, 60)
    expected = _reference(app_env, tmp_path, dovecot, user)
    box = make_mailbox(app_env, dovecot, user)
    workers = _rq_workers(app_env, env)
    try:
        with new_session(app_env["DATABASE_URL"]) as db:
            assert request_fetch(db, box, app_env["REDIS_URL"], app_env["RQ_QUEUE"])
        yield box, expected
    finally:
        for worker in workers:
            _kill(worker)


@ON_BOTH
def test_two_workers_file_one_mailbox_once_each_reply_on_its_case(
    app_env, parallel_env, tmp_path, dovecot, mail_user
):
    with _fetching(app_env, parallel_env, tmp_path, dovecot, mail_user) as (box, expected):
        _wait_for(lambda: runs(app_env, box) and runs(app_env, box)[-1].state == "ok", "the fetch")
        unfiled = _unfiled(app_env, box)
    assert unfiled == 0  # the fetch ends when its mail is filed, by whichever worker
    if app_env["DATABASE_URL"].startswith("postgresql"):
        assert _filed_by_jobs(app_env, box) > 0  # the idle worker took part
    else:  # SQLite: one write lock, the fetch files alone (services/ingest/shared.py)
        assert _filed_by_jobs(app_env, box) == 0
    _same_threads(app_env, box, expected)


@pytest.mark.parametrize(
    "database_url", [pytest.param("PostgreSQL", marks=pytest.mark.postgres)], indirect=True
)
@pytest.mark.parametrize("victim", ["the filing worker", "the fetching worker"])
def test_sigkill_of_either_worker_mid_filing_loses_and_duplicates_nothing(
    app_env, parallel_env, tmp_path, dovecot, mail_user, victim
):
    with _fetching(app_env, parallel_env, tmp_path, dovecot, mail_user) as (box, expected):

        def claimed_by_job() -> str | None:
            for row in raws(app_env, box):
                if row.state == "new" and (row.claimed_by or "").startswith("filing:"):
                    return row.claimed_by
            return None

        _wait_for(claimed_by_job, "a filing job holding rows")
        if victim == "the filing worker":
            _kill_holder(claimed_by_job() or "")
        else:
            with new_session(app_env["DATABASE_URL"]) as db:
                _kill_holder(db.get(FetchLease, box).holder)
        killed_at = _unfiled(app_env, box)
        if victim == "the fetching worker":
            _fetch_until_not_busy(app_env, box)  # the next fetch (here in this process)
        _wait_for(lambda: _unfiled(app_env, box) == 0 and runs(app_env, box)[-1].state == "ok",
                  "everything filed")  # fmt: skip
    assert killed_at > 0
    _same_threads(app_env, box, expected)


def test_the_sweep_heals_rows_a_dead_filing_job_held(app_env, dovecot, mail_user, run_worker):
    for i in range(3):
        mail_user.deliver(email(f"Held by a dead job {i}", sender=f"d{i}@example.org"))
    box = make_mailbox(app_env, dovecot, mail_user)
    assert fetch(app_env, box)["state"] == "ok"
    with new_session(app_env["DATABASE_URL"]) as db:  # as a filing job killed mid-chunk left it
        for model in (Message, Case):
            for row in db.exec(select(model)).all():
                db.delete(row)
        db.exec(
            update(RawMessage).values(
                state="new",
                claimed_by=claims.filing_holder("host:1:killed"),
                claimed_until=utcnow() - timedelta(seconds=1),  # its claim has expired
                fetched_at=utcnow() - timedelta(minutes=5),
            )
        )
        db.commit()
    assert sweep() == 1
    run_worker()
    assert counts(app_env, box)["cases"] == 3
    assert {r.state for r in raws(app_env, box)} == {"done"}
