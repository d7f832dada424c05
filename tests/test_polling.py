"""Scheduled polls: grouped into few jobs, run by the real worker without a fork, a tarpit
times out alone and backs off, and the page and the API say when it tries again."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from rq.job import Job

from tests.helpers.databases import ON_BOTH
from tests.helpers.mailboxes import make_mailbox, update_mailbox
from tests.helpers.messages import email
from tests.helpers.processes import rq_worker
from tests.helpers.rows import cases_by_subject, mailbox, runs
from tests.helpers.web import api_mailbox_items
from tests.servers.tarpit import Tarpit
from webapp.db import new_session, utcnow
from webapp.models import FetchLease
from webapp.queue import get_queue
from webapp.services.fetching import schedule

pytestmark = pytest.mark.usefixtures("redis_server")


def _polled_mailboxes(env: dict, count: int) -> list[tuple[int, object]]:
    """Mailboxes past their first fetch, due now, each with one new message."""
    boxes = []
    for n in range(count):
        user = env["dovecot"].new_user()
        user.deliver(email(f"Poll {n}", to=user.email))
        box = make_mailbox(
            env["app_env"],
            env["dovecot"],
            user,
            initial_fetch_done=True,
            next_fetch_due_at=utcnow() - timedelta(seconds=count - n),  # due in this order
        )
        boxes.append((box, user))
    return boxes


def _tick(app_env: dict) -> int:
    """One tick of the scheduler (worker.jobs.schedule_fetches)."""
    with new_session(app_env["DATABASE_URL"]) as db:
        return schedule.schedule_due(db, app_env["REDIS_URL"], app_env["RQ_QUEUE"])


def _wait_until(check, limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        time.sleep(0.2)


@ON_BOTH
def test_the_scheduler_puts_due_mailboxes_into_one_job_and_the_worker_polls_them_in_process(
    app_env, dovecot
):
    boxes = _polled_mailboxes({"app_env": app_env, "dovecot": dovecot}, 3)
    assert _tick(app_env) == 3
    queue = get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    job_ids = queue.get_job_ids()
    assert len(job_ids) == 1  # three mailboxes, one poll job
    job = Job.fetch(job_ids[0], connection=queue.connection)
    assert job.func_name == "worker.jobs.poll_mailboxes"
    assert _tick(app_env) == 0  # each mailbox claimed its queued slot: no second job
    with rq_worker(app_env) as worker:
        _wait_until(lambda: all(runs(app_env, box) for box, _ in boxes))
        _wait_until(lambda: len(cases_by_subject(app_env)) == 3)
        pids = {run.holder.split(":")[1] for box, _ in boxes for run in runs(app_env, box)}
        assert pids == {str(worker.pid)}  # run by the worker itself: no work horse forked
        # A first fetch still gets a work horse, which must not share the worker's connections.
        user = dovecot.new_user()
        user.deliver(email("First fetch", to=user.email))
        first = make_mailbox(app_env, dovecot, user)
        assert _tick(app_env) == 1
        _wait_until(lambda: "First fetch" in cases_by_subject(app_env))
        assert runs(app_env, first)[-1].holder.split(":")[1] != str(worker.pid)
        # After the fork the worker's own pooled connections still serve the next poll.
        update_mailbox(app_env, boxes[0][0], next_fetch_due_at=utcnow() - timedelta(seconds=1))
        assert _tick(app_env) == 1
        _wait_until(lambda: len(runs(app_env, boxes[0][0])) == 2)
        assert runs(app_env, boxes[0][0])[-1].state == "ok"
    assert sorted(cases_by_subject(app_env)) == ["First fetch", "Poll 0", "Poll 1", "Poll 2"]


def test_a_tarpit_times_out_alone_backs_off_and_the_page_and_api_say_when_it_tries_again(
    app_env, dovecot, admin, client, monkeypatch
):
    monkeypatch.setenv("MAILCHANNEL_CONNECT_TIMEOUT", "3")
    app_env = {**app_env, "MAILCHANNEL_CONNECT_TIMEOUT": "3"}
    with Tarpit() as pit:
        pit_user = dovecot.new_user()
        stuck = make_mailbox(
            app_env,
            dovecot,
            pit_user,
            initial_fetch_done=True,
            next_fetch_due_at=utcnow() - timedelta(minutes=1),  # first in the group
        )
        update_mailbox(app_env, stuck, port=pit.port)
        boxes = _polled_mailboxes({"app_env": app_env, "dovecot": dovecot}, 2)
        assert _tick(app_env) == 3
        assert len(get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"]).get_job_ids()) == 1
        with rq_worker(app_env):
            _wait_until(lambda: mailbox(app_env, stuck).last_fetch_at is not None)
        assert pit.accepted == 1
    failed = mailbox(app_env, stuck)
    assert failed.last_fetch_error_kind == "timeout"
    assert "did not answer in time" in failed.last_fetch_error
    assert failed.last_fetch_error_advice
    assert failed.fetch_failures == 1
    assert failed.next_fetch_due_at.replace(tzinfo=None) > utcnow().replace(tzinfo=None)
    with new_session(app_env["DATABASE_URL"]) as db:
        assert db.get(FetchLease, stuck) is None  # the lease went with the timeout
    stuck_end = runs(app_env, stuck)[-1].finished_at
    for box, _ in boxes:
        assert runs(app_env, box)[-1].finished_at < stuck_end  # not held up by the tarpit
    assert sorted(cases_by_subject(app_env)) == ["Poll 0", "Poll 1"]
    page = admin.get(f"/mailboxes/{stuck}").get_data(as_text=True)
    assert "Next try:" in page
    assert "1 failed fetch in a row" in page
    item = next(i for i in api_mailbox_items(admin, client) if i["id"] == stuck)
    assert item["fetch_failures"] == 1
    assert item["next_try_at"] is not None
    assert item["fetch_error_advice"] == failed.last_fetch_error_advice


def test_a_healthy_mailbox_shows_no_next_try(app_env, dovecot, admin, client):
    (box, _user), *_ = _polled_mailboxes({"app_env": app_env, "dovecot": dovecot}, 1)
    page = admin.get(f"/mailboxes/{box}").get_data(as_text=True)
    assert "Next try:" not in page
    item = next(i for i in api_mailbox_items(admin, client) if i["id"] == box)
    assert item["next_try_at"] is None
