"""Background work gives way to people: while the web on this host answers a page, a worker
between two messages commits what it holds and waits (webapp/yielding.py), a bounded time."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func
from sqlmodel import select

from tests.helpers.databases import ON_BOTH
from tests.helpers.messages import email
from tests.helpers.processes import rq_worker
from tests.helpers.rows import store
from tests.helpers.watch import wait_for
from webapp import yielding
from webapp.db import new_session
from webapp.models import Case, Mailbox
from webapp.queue import get_queue
from webapp.services.ingest import batch
from webapp.services.ingest.batch import process_ids
from webapp.yielding import GiveWay, Requests, connect, requests_key


@pytest.fixture
def no_notes(redis_server):
    """This host's request notes, empty before and after the test."""
    redis = redis_server.client()
    redis.delete(requests_key())
    yield redis
    redis.delete(requests_key())


class HeldPage:
    """A real page (/healthz, through every hook of the app) held open until released."""

    def __init__(self, app) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.status: int | None = None
        original = app.view_functions["main.healthz"]

        def held():
            self.entered.set()
            self.release.wait(30)
            return original()

        app.view_functions["main.healthz"] = held
        self.thread = threading.Thread(target=self._get, args=(app,), daemon=True)

    def _get(self, app) -> None:
        self.status = app.test_client().get("/healthz").status_code

    def __enter__(self) -> HeldPage:
        self.thread.start()
        assert self.entered.wait(10), "the page never started"
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.thread.join(10)


def test_a_worker_waits_while_a_page_is_answered_and_goes_on_when_it_is(app, redis_url, no_notes):
    way = GiveWay(connect(redis_url), max_pause=30)
    done: list[str] = []
    with HeldPage(app) as page:
        waiter = threading.Thread(
            target=lambda: done.append(f"waited {way(lambda: done.append('committed'))}")
        )
        waiter.start()
        assert wait_for(lambda: done == ["committed"], what="the worker committed first")
        time.sleep(0.3)
        assert waiter.is_alive(), "the worker went on while the page was answered"
    waiter.join(10)
    assert page.status == 200
    assert not waiter.is_alive()
    assert done[0] == "committed"
    assert done[1].startswith("waited ")
    assert way.pauses == 1


def test_with_no_page_being_answered_a_worker_does_not_wait(app, redis_url, no_notes):
    way = GiveWay(connect(redis_url), max_pause=30)
    committed: list[bool] = []
    app.test_client().get("/healthz")  # a page answered before: its note is gone
    assert way(lambda: committed.append(True)) == 0.0
    assert committed == []
    assert no_notes.zcard(requests_key()) == 0


def test_a_pause_is_bounded_and_then_the_worker_works_before_it_waits_again(redis_url, no_notes):
    requests = Requests(connect(redis_url))
    token = requests.started()  # a page that does not end
    way = GiveWay(connect(redis_url), max_pause=0.05, min_run=3600)
    assert way() > 0
    assert way() == 0.0, "it waited again without working in between"
    assert way.pauses == 1
    requests.ended(token)


def test_a_request_noted_longer_ago_than_it_may_hold_workers_lapses(redis_url, no_notes):
    """A web process that died mid-request, or a download streaming for minutes: after
    NOTE_SECONDS workers go on."""
    noted = time.time() - yielding.NOTE_SECONDS - 1
    no_notes.zadd(requests_key(), {"noted-long-ago": noted + yielding.NOTE_SECONDS})
    way = GiveWay(connect(redis_url), max_pause=30)
    assert way() == 0.0
    assert way.pauses == 0


def test_workers_on_another_host_do_not_wait_for_this_hosts_pages(redis_url, no_notes):
    requests = Requests(connect(redis_url))
    token = requests.started()
    elsewhere = GiveWay(connect(redis_url), host="another-host", max_pause=30)
    assert elsewhere() == 0.0
    requests.ended(token)


def test_pages_are_answered_when_redis_does_not(tmp_path, app_env, monkeypatch):
    from webapp import create_app

    monkeypatch.setenv("REDIS_URL", f"unix://{tmp_path / 'no-redis.sock'}")
    client = create_app({"TESTING": True}).test_client()
    assert client.get("/auth/login").status_code in (200, 302)  # no admin yet: 302
    assert client.get("/auth/first-admin").status_code == 200
    assert GiveWay(connect(f"unix://{tmp_path / 'no-redis.sock'}"))() == 0.0


def test_without_worker_yield_the_web_notes_nothing(app_env, monkeypatch, no_notes):
    from webapp import create_app

    monkeypatch.setenv("WORKER_YIELD", "0")
    app = create_app({"TESTING": True})
    with HeldPage(app):
        assert no_notes.zcard(requests_key()) == 0


def test_worker_yield_must_be_on_or_off(tmp_path):
    from webapp.config import load_settings

    with pytest.raises(ValueError, match="WORKER_YIELD"):
        load_settings({"INSTANCE_PATH": str(tmp_path), "WORKER_YIELD": "sometimes"})


@ON_BOTH
def test_filing_commits_what_it_filed_before_it_waits(
    database_url, redis_url, no_notes, monkeypatch
):
    """While the worker waits, what it filed is committed: the page sees it, and no lock is
    held that a page's write would wait for."""
    seen: list[int] = []
    requests = Requests(connect(redis_url))
    with new_session(database_url) as db:
        box = Mailbox(name="Support", email_address="support@example.com",
                      email_key="support@example.com", setup_complete=True, verify_state="ok",
                      fetching_enabled=True)  # fmt: skip
        db.add(box)
        db.commit()
        ids = [store(db, box, email(f"Case {n}", sender=f"s{n}@x.example")) for n in range(6)]
        box_id = box.id

    def page_meanwhile(_seconds: float) -> None:
        """What a page asks while the worker waits: the cases so far, then a write."""
        with new_session(database_url) as other:
            seen.append(other.exec(select(func.count()).select_from(Case)).one())
            mailbox = other.get(Mailbox, box_id)
            mailbox.description = f"edited while {seen[-1]} cases were filed"
            other.add(mailbox)
            other.commit()  # waits for no lock: the worker committed
        requests.ended(token)

    way = GiveWay(connect(redis_url), max_pause=30, sleep=page_meanwhile)
    monkeypatch.setattr(yielding, "_worker", way)
    monkeypatch.setattr(yielding, "CHECK_SECONDS", 0.0)
    monkeypatch.setattr(batch, "COMMIT_SECONDS", 3600.0)  # the batch would not commit by itself
    token = None
    asked = []

    def check() -> None:  # before each message: a page starts before the fourth
        nonlocal token
        asked.append(1)
        if len(asked) == 4:
            token = requests.started()

    with new_session(database_url) as db:
        counts = process_ids(db, ids, check=check)
    assert counts == {"done": 6}
    assert way.pauses == 1
    assert seen == [3]
    with new_session(database_url) as db:
        assert db.get(Mailbox, box_id).description == "edited while 3 cases were filed"


def test_a_real_worker_waits_for_a_page_and_not_with_worker_yield_off(
    app_env, redis_url, no_notes, monkeypatch
):
    """The Procfile's worker gives way (worker/settings.py): a job asking to, while a page is
    noted, waits; with WORKER_YIELD=0 it does not."""
    queue = get_queue(redis_url, app_env["RQ_QUEUE"])
    no_notes.zadd(requests_key(), {"a page": time.time() + 600})  # held while the worker starts
    try:
        for setting, waits in (("1", True), ("0", False)):
            monkeypatch.setenv("WORKER_YIELD", setting)
            with rq_worker({**app_env, "WORKER_YIELD": setting}):
                job = queue.enqueue("webapp.yielding.give_way")
                wait_for(lambda j=job: j.get_status(refresh=True) == "finished", what="the job")
                assert (job.return_value() > 0) is waits, f"WORKER_YIELD={setting}"
    finally:
        no_notes.delete(requests_key())


def test_the_fetch_log_says_how_long_a_fetch_gave_way_to_the_pages(
    app_env, dovecot, mail_user, redis_url, no_notes, monkeypatch
):
    from tests.helpers.mailboxes import fetch, make_mailbox
    from tests.helpers.rows import runs

    for n in range(3):
        mail_user.deliver(email(f"Question {n}", sender=f"s{n}@x.example"))
    box = make_mailbox(app_env, dovecot, mail_user)
    monkeypatch.setattr(yielding, "_worker", GiveWay(connect(redis_url), max_pause=1.2))
    no_notes.zadd(requests_key(), {"a page": time.time() + 600})  # someone is using the pages
    assert fetch(app_env, box)["state"] == "ok"
    assert "while people were using the pages" in runs(app_env, box)[-1].notes
    no_notes.delete(requests_key())
    mail_user.deliver(email("Question 4", sender="s4@x.example"))
    assert fetch(app_env, box)["state"] == "ok"
    assert "while people were using the pages" not in runs(app_env, box)[-1].notes


def test_static_files_do_not_hold_workers(app, redis_url, no_notes, monkeypatch):
    from webapp import yielding as module

    noted: list[str | None] = []
    original = module.Requests.started
    monkeypatch.setattr(module.Requests, "started", lambda self: noted.append(original(self)))
    assert app.test_client().get("/static/app.css").status_code == 200
    assert noted == []
