"""Running on more than one machine (issue 14, part 5): every process the Procfile names, several
copies of each, sharing one PostgreSQL and one Redis and nothing else. A mailbox's mail arrives once."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func
from sqlmodel import select

from tests.helpers.mailboxes import update_mailbox
from tests.helpers.messages import email
from tests.helpers.processes import rq_worker, scheduler_process, web_process
from tests.helpers.watch import wait_for
from tests.helpers.web import ADMIN_EMAIL, ADMIN_PASSWORD, MAILBOX_FORM, csrf_from, on_dovecot
from tests.servers.dovecot import free_ports
from webapp.db import new_session, utcnow
from webapp.models import Case, Mailbox, Message, RawMessage


class Browser:
    """One person's browser: the same session cookie, sent to whichever web process answers."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def get(self, url: str) -> str:
        resp = self.session.get(url, timeout=30)
        assert resp.status_code == 200, f"GET {url}: {resp.status_code}"
        return resp.text

    def post(self, url: str, form_url: str, data: dict | None = None) -> requests.Response:
        """Post a form, with the CSRF token of the page it is on."""
        token = csrf_from(self.get(form_url))
        return self.session.post(
            url, data={**(data or {}), "csrf_token": token}, timeout=30, allow_redirects=False
        )


def _count(env: dict, model, *where) -> int:
    with new_session(env["DATABASE_URL"]) as db:
        return db.exec(select(func.count()).select_from(model).where(*where)).one()


def _deliver(user, prefix: str, count: int) -> list[str]:
    subjects = [f"{prefix} {n}" for n in range(count)]
    for subject in subjects:
        user.deliver(email(subject, sender=f"{subject.replace(' ', '.').lower()}@example.org"))
    return subjects


def _subjects_once(env: dict) -> dict[str, int]:
    with new_session(env["DATABASE_URL"]) as db:
        rows = db.exec(select(Case.subject, func.count()).group_by(Case.subject)).all()
    return dict(rows)


def _new_mailbox(browser: Browser, web: str, dovecot, user) -> int:
    """New Mailbox saved through this web process; the mailbox's id."""
    form = {**MAILBOX_FORM, **on_dovecot(dovecot, user)}
    resp = browser.post(f"{web}/mailboxes/new", f"{web}/mailboxes/new", form)
    assert resp.status_code == 302, resp.text
    return int(re.search(r"/mailboxes/(\d+)/setup", resp.headers["Location"]).group(1))


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["PostgreSQL"], indirect=True)
def test_two_webs_two_workers_and_two_schedulers_file_each_message_once(
    app_env, dovecot, mail_user
):
    env = dict(app_env)
    waiting = _deliver(mail_user, "Waiting", 6)
    web_a_port, web_b_port = free_ports(2)
    with (
        web_process(env, web_a_port) as web_a,
        web_process(env, web_b_port) as web_b,
        rq_worker(env),
        rq_worker(env),
        scheduler_process(env),
        scheduler_process(env),
    ):
        browser = Browser()
        first = {"email": ADMIN_EMAIL, "name": "Ada", "password": ADMIN_PASSWORD}
        first["password2"] = ADMIN_PASSWORD
        created = browser.post(f"{web_a}/auth/first-admin", f"{web_a}/auth/first-admin", first)
        assert created.status_code == 302, created.text

        # Signed in on web A, the same browser saves the mailbox on web B.
        box = _new_mailbox(browser, web_b, dovecot, mail_user)
        wait_for(
            lambda: "6 messages in this mailbox" in browser.get(f"{web_a}/mailboxes/{box}/setup"),
            timeout=60,
            what="Mailbox Setup to count the mailbox through a worker",
        )
        setup = f"{web_b}/mailboxes/{box}/setup"
        continued = browser.post(f"{web_b}/mailboxes/{box}/continue", setup)
        assert continued.status_code == 302
        wait_for(lambda: _count(env, Case) == 6, timeout=60, what="the first fetch")

        # New mail, and Fetch now pressed on both web processes at the same moment, twice.
        pressed = _deliver(mail_user, "Pressed", 6)
        page = f"{web_a}/mailboxes/{box}"

        def press(web: str) -> None:
            browser.post(f"{web}/mailboxes/{box}/fetch", page)

        for _ in range(2):
            threads = [threading.Thread(target=press, args=(web,)) for web in (web_a, web_b)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        wait_for(lambda: _count(env, Case) == 12, timeout=60, what="the pressed fetches")

        # New mail again, and the interval is up: the schedulers (two of them) enqueue it.
        scheduled = _deliver(mail_user, "Scheduled", 6)
        update_mailbox(env, box, next_fetch_due_at=utcnow() - timedelta(seconds=1))
        wait_for(lambda: _count(env, Case) == 18, timeout=60, what="the scheduled fetch")

        # Both schedulers tick over the unchanged mailbox once more: it is polled, nothing doubles.
        update_mailbox(env, box, next_fetch_due_at=utcnow() - timedelta(seconds=1))
        wait_for(
            lambda: (mb := _mailbox_due(env, box)) is not None and mb > utcnow(),
            timeout=30,
            what="one more scheduled poll",
        )
        listed = browser.get(f"{web_b}/cases")

    subjects = _subjects_once(env)
    assert len(subjects) == 18
    assert [subject for subject, count in subjects.items() if count > 1] == []
    assert sorted(subjects) == sorted(waiting + pressed + scheduled)
    assert _count(env, RawMessage) == 18
    assert _count(env, Message) == 18
    assert "Scheduled 5" in listed


def _mailbox_due(env: dict, box: int):
    with new_session(env["DATABASE_URL"]) as db:
        return db.exec(select(Mailbox.next_fetch_due_at).where(Mailbox.id == box)).one()
