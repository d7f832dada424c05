"""kill -9, two workers, lost jobs and poison messages: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from rq.job import Job
from sqlmodel import select

from tests.helpers.databases import migrate
from tests.helpers.mailboxes import fetch, make_mailbox, update_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import counts, raws, runs, snapshot
from webapp import crypto
from webapp.config import PROJECT_ROOT
from webapp.db import new_session, utcnow
from webapp.mail.parse import DEFAULT_LIMITS, ParseLimits
from webapp.models import Case, FetchLease, FetchRun, Message, RawMessage
from webapp.queue import get_queue
from webapp.services.fetching import fetch as fetch_service
from webapp.services.fetching.schedule import enqueue_fetch, request_fetch
from webapp.services.fetching.status import fetch_log
from webapp.services.ingest.rows import reprocess
from worker.jobs import schedule_fetches, sweep

FETCH_SCRIPT = (
    "import sys; from worker.jobs import fetch_mailbox; print(fetch_mailbox(int(sys.argv[1])))"
)


def _deliver_threads(user, count: int) -> None:
    """count messages: every third one answers the one before it."""
    for i in range(count):
        reply = f"<r{i - 1}@kill>" if i % 3 == 2 else None
        user.deliver(
            email(
                f"Message {i}",
                sender=f"sender{i % 4}@example.org",
                message_id=f"<r{i}@kill>",
                in_reply_to=reply,
            )
        )


def _reference(app_env, tmp_path, dovecot, user) -> dict:
    """What an uninterrupted run makes of the same mailbox, in a database of its own."""
    url = f"sqlite:///{tmp_path / 'reference.db'}"
    migrate(url)
    env = {**app_env, "DATABASE_URL": url}
    box = make_mailbox(env, dovecot, user)
    assert fetch_service.fetch_mailbox(url, box, app_env["MAIL_CA_BUNDLE"])["state"] == "ok"
    return snapshot(env, box)


def _wait_for(predicate, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _fetch_until_not_busy(app_env, box: int) -> dict:
    """Rerun the fetch; while the killed worker's lease has not expired it answers busy."""
    result = {"state": "busy"}
    _wait_for(
        lambda: result.update(fetch(app_env, box)) or result["state"] != "busy",
        "the lease to expire",
    )
    return result


def rq_worker_args(app_env: dict, *options: str) -> list[str]:
    """The command line of a real `rq worker` on the app's queue."""
    return [
        str(PROJECT_ROOT / ".venv/bin/rq"),
        "worker",
        "--url",
        app_env["REDIS_URL"],
        "--path",
        str(PROJECT_ROOT),
        *options,
        app_env["RQ_QUEUE"],
    ]


def _spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        cwd=PROJECT_ROOT,
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill(
    process: subprocess.Popen, env: dict | None = None, mailbox_id: int | None = None
) -> None:
    """SIGKILL the process doing the fetch (its pid is in the lease holder) and the worker.

    rq's work-horse runs in a session of its own, so killing the worker's group
    alone would leave it running.
    """
    if env is not None:
        with new_session(env["DATABASE_URL"]) as db:
            lease = db.get(FetchLease, mailbox_id)
            if lease is not None:
                os.kill(int(lease.holder.split(":")[1]), signal.SIGKILL)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture
def slow_env(app_env, monkeypatch) -> dict:
    monkeypatch.setenv("MAILCHANNEL_LEASE_TTL", "2")
    return {
        **os.environ,
        "MAILCHANNEL_FETCH_BATCH_SIZE": "4",
        "MAILCHANNEL_TEST_BATCH_DELAY": "0.3",
        "MAILCHANNEL_LEASE_TTL": "2",
    }


def test_sigkill_of_an_rq_worker_mid_fetch_then_rerun_equals_an_uninterrupted_run(
    app_env, slow_env, tmp_path, dovecot, mail_user
):
    _deliver_threads(mail_user, 24)
    expected = _reference(app_env, tmp_path, dovecot, mail_user)
    box = make_mailbox(app_env, dovecot, mail_user)
    with new_session(app_env["DATABASE_URL"]) as db:
        assert request_fetch(db, box, app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    worker = _spawn(
        rq_worker_args(app_env, "--burst"),
        slow_env,
    )
    try:
        _wait_for(lambda: counts(app_env, box)["raw"] >= 8, "two committed batches")
    finally:
        _kill(worker, app_env, box)
    stored = counts(app_env, box)["raw"]
    assert 8 <= stored < 24
    assert runs(app_env, box)[-1].state == "running"
    assert _fetch_until_not_busy(app_env, box)["state"] == "ok"
    assert snapshot(app_env, box) == expected
    got = counts(app_env, box)
    assert got["raw"] == got["shas"] == got["messages"] == got["message_raw_ids"] == 24
    assert [r.state for r in runs(app_env, box)] == ["interrupted", "ok"]


def test_sigkill_mid_processing_then_rerun_loses_and_duplicates_nothing(
    app_env, slow_env, tmp_path, dovecot, mail_user
):
    _deliver_threads(mail_user, 6)
    expected = _reference(app_env, tmp_path, dovecot, mail_user)
    box = make_mailbox(app_env, dovecot, mail_user)
    env = {
        **slow_env,
        "MAILCHANNEL_FETCH_BATCH_SIZE": "100",
        "MAILCHANNEL_TEST_PROCESS_DELAY": "0.5",
    }
    process = _spawn([sys.executable, "-c", FETCH_SCRIPT, str(box)], env)

    def mid_processing() -> bool:
        rows = raws(app_env, box)
        return any(r.state == "done" for r in rows) and any(
            r.state == "new" and r.attempts for r in rows
        )

    try:
        _wait_for(mid_processing, "a message in the middle of processing")
    finally:
        _kill(process)
    assert counts(app_env, box)["raw"] == 6
    assert counts(app_env, box)["messages"] < 6
    assert _fetch_until_not_busy(app_env, box)["state"] == "ok"
    assert snapshot(app_env, box) == expected
    assert counts(app_env, box)["messages"] == 6


def test_two_workers_fetching_the_same_mailbox_at_once_make_no_duplicates(
    app_env, dovecot, mail_user
):
    _deliver_threads(mail_user, 12)
    box = make_mailbox(app_env, dovecot, mail_user)
    # bypass request_fetch: two jobs for one mailbox, as a duplicate delivery by RQ would
    job_ids = [enqueue_fetch(box, app_env["REDIS_URL"], app_env["RQ_QUEUE"]) for _ in range(2)]
    env = {**os.environ, "MAILCHANNEL_FETCH_BATCH_SIZE": "3", "MAILCHANNEL_TEST_BATCH_DELAY": "0.1"}
    workers = [
        _spawn(
            rq_worker_args(app_env, "--burst"),
            env,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    got = counts(app_env, box)
    assert got["raw"] == got["shas"] == got["messages"] == got["message_raw_ids"] == 12
    assert got["cases"] == 8
    connection = get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"]).connection
    results = [Job.fetch(job_id, connection=connection).return_value() for job_id in job_ids]
    assert {r["state"] for r in results} <= {
        "ok",
        "busy",
    }  # the second waits its turn or finds the lease taken
    assert sum(r.get("new", 0) for r in results) == 12


def test_a_lost_job_is_enqueued_again_by_the_sweep(app_env, dovecot, mail_user, run_worker):
    mail_user.deliver(email("Lost in Redis"))
    box = make_mailbox(app_env, dovecot, mail_user)
    with new_session(app_env["DATABASE_URL"]) as db:
        assert request_fetch(db, box, app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"]).empty()  # Redis lost the job
    assert sweep() == 0  # queued a moment ago: not lost yet
    update_mailbox(app_env, box, fetch_queued_at=utcnow() - timedelta(minutes=10))
    assert sweep() == 1
    assert sweep() == 0  # the new job holds it
    run_worker()
    assert counts(app_env, box)["cases"] == 1


def test_the_scheduler_enqueues_due_mailboxes_only(app_env, dovecot, mail_user, run_worker):
    mail_user.deliver(email("Scheduled"))
    due = make_mailbox(app_env, dovecot, mail_user)
    later = make_mailbox(
        app_env, dovecot, dovecot.new_user(), next_fetch_due_at=utcnow() + timedelta(hours=1)
    )
    off = make_mailbox(app_env, dovecot, dovecot.new_user(), enabled=False)
    assert schedule_fetches() == 1
    assert schedule_fetches() == 0
    run_worker()
    assert counts(app_env, due)["cases"] == 1
    assert runs(app_env, later) == []
    assert runs(app_env, off) == []
    assert schedule_fetches() == 0  # the interval is not up again yet


def test_unprocessed_rows_left_by_a_crash_are_found_by_the_sweep(
    app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(email("Stored, never processed"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch(app_env, box)
    with new_session(app_env["DATABASE_URL"]) as db:  # as if the worker died after storing
        for model in (Message, Case):
            for row in db.exec(select(model)).all():
                db.delete(row)
        row = db.exec(select(RawMessage)).one()
        row.state, row.fetched_at = "new", utcnow() - timedelta(minutes=5)
        db.add(row)
        db.commit()
    update_mailbox(app_env, box, enabled=False)  # even a mailbox that no longer fetches
    assert sweep() == 1
    run_worker()
    assert counts(app_env, box)["cases"] == 1
    assert raws(app_env, box)[0].state == "done"


def test_a_dead_workers_lease_expires_and_its_run_is_marked_interrupted(
    app_env, dovecot, mail_user
):
    mail_user.deliver(email("After a crash"))
    box = make_mailbox(app_env, dovecot, mail_user)
    with new_session(app_env["DATABASE_URL"]) as db:
        db.add(
            FetchLease(
                mailbox_id=box, holder="dead-host:1:x", expires_at=utcnow() + timedelta(minutes=1)
            )
        )
        db.add(FetchRun(mailbox_id=box, holder="dead-host:1:x"))
        db.commit()
    assert fetch(app_env, box)["state"] == "busy"  # never two fetches of one mailbox
    with new_session(app_env["DATABASE_URL"]) as db:
        lease = db.get(FetchLease, box)
        lease.expires_at = utcnow() - timedelta(seconds=1)
        db.add(lease)
        db.commit()
    assert fetch(app_env, box)["state"] == "ok"
    assert [r.state for r in runs(app_env, box)] == ["interrupted", "ok"]
    with new_session(app_env["DATABASE_URL"]) as db:
        assert db.exec(select(FetchLease)).all() == []  # released


def test_poison_messages_are_kept_with_a_reason_and_reprocess_fixes_them(
    app_env, dovecot, mail_user
):
    mail_user.deliver(email("Before the poison"))
    mail_user.deliver(
        email("Huge header", extra="X-Filler: " + "h" * (DEFAULT_LIMITS.max_header_bytes + 100))
    )
    mail_user.deliver(email("Huge body", body="b" * 400_000 + "\n"))
    mail_user.deliver(email("After the poison"))
    box = make_mailbox(app_env, dovecot, mail_user, max_message_bytes=350_000)
    result = fetch(app_env, box)
    assert result["state"] == "ok"
    assert result["new"] == 4
    assert result["failed"] == 2
    rows = {r.header_subject: r for r in raws(app_env, box)}
    assert rows["Huge header"].state == "failed"
    assert "header block" in rows["Huge header"].error
    assert rows["Huge body"].state == "too_large"
    assert "limit" in rows["Huge body"].error
    assert {rows[s].state for s in ("Before the poison", "After the poison")} == {"done"}
    with new_session(app_env["DATABASE_URL"]) as db:
        log = fetch_log(db, box)
        assert {r.header_subject for r in log[0].failed} == {"Huge header", "Huge body"}
        bigger = ParseLimits(max_header_bytes=DEFAULT_LIMITS.max_header_bytes * 2)
        assert reprocess(db, rows["Huge header"].id, limits=bigger) == "done"
        assert (
            reprocess(db, rows["Huge body"].id) == "refetch"
        )  # never downloaded: the next fetch does
    update_mailbox(app_env, box, max_message_bytes=1_000_000)
    fetch(app_env, box)
    states = {r.header_subject: r.state for r in raws(app_env, box)}
    assert set(states.values()) == {"done"}
    assert len(states) == 4
    assert counts(app_env, box)["cases"] == 4


def test_rq_cron_runs_the_scheduler_that_fetches_due_mailboxes(
    app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(email("Fetched by the schedule"))
    box = make_mailbox(app_env, dovecot, mail_user)
    queue = get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    cron = subprocess.Popen(
        [
            str(PROJECT_ROOT / ".venv/bin/rq"),
            "cron",
            "--url",
            app_env["REDIS_URL"],
            "--path",
            str(PROJECT_ROOT),
            "worker/cron.py",
        ],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(
            lambda: "worker.jobs.schedule_fetches" in {j.func_name for j in queue.get_jobs()},
            "rq cron to enqueue the scheduler's tick",
        )
    finally:
        cron.terminate()
        cron.wait(timeout=10)
    run_worker()  # the tick enqueues the due fetch, the same burst runs it
    assert counts(app_env, box)["cases"] == 1


def test_a_scheduled_fetch_whose_password_google_refuses_says_to_switch_to_oauth(
    app_env, admin, dovecot, mail_user
):
    # Google itself cannot be reached: the Gmail preset makes the mailbox Google's, and the
    # test Dovecot rejects the password as Google does since it ended Basic authentication.
    box = make_mailbox(app_env, dovecot, mail_user, provider="gmail")
    update_mailbox(app_env, box, password_enc=crypto.encrypt("an-old-app-password"))
    fetch(app_env, box)
    page = admin.get(f"/mailboxes/{box}").get_data(as_text=True)
    assert "Google refuses passwords (Basic authentication) for its mailboxes." in page
    assert "Switch to OAuth: Edit the mailbox, set Authentication Type to OAuth" in page
    assert "an-old-app-password" not in page
