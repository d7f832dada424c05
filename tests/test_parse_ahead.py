"""Parsing in a helper process while the worker files: same result, nothing lost, no orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sqlmodel import select

from tests.helpers.databases import migrate
from tests.helpers.mailboxes import make_mailbox
from tests.helpers.messages import MARKER, email
from tests.helpers.rows import counts, raws, snapshot
from webapp.config import PROJECT_ROOT
from webapp.db import new_session
from webapp.mail.parse import DEFAULT_LIMITS
from webapp.models import Message
from webapp.services.fetching import fetch as fetch_service
from webapp.services.ingest import parse_ahead
from webapp.services.ingest.parse_ahead import ParseAhead


def _deliver(user, count: int) -> None:
    """A mailbox worth a helper: threads, a reply above our marker, and a poison message."""
    for i in range(count):
        body = "Hello,\nplease help.\n"
        if i % 5 == 4:
            body = f"Thanks, fixed now.\n\n{MARKER}\nOur earlier answer, quoted back.\n"
        user.deliver(email(f"Message {i}", sender=f"sender{i % 6}@example.org", body=body,
                           message_id=f"<a{i}@ahead>",
                           in_reply_to=f"<a{i - 1}@ahead>" if i % 5 == 4 else None))  # fmt: skip
    user.deliver(email("Poison", extra="X-Filler: " + "h" * (DEFAULT_LIMITS.max_header_bytes + 9)))


def _fetch_into_new_database(app_env, tmp_path, dovecot, user, name: str) -> tuple[dict, dict]:
    url = f"sqlite:///{tmp_path / name}"
    migrate(url)
    env = {**app_env, "DATABASE_URL": url}
    box = make_mailbox(env, dovecot, user, end_of_message_marker=MARKER)
    result = fetch_service.fetch_mailbox(url, box, app_env["MAIL_CA_BUNDLE"])
    with new_session(url) as db:
        texts = sorted(m.text for m in db.exec(select(Message)).all())  # the replies, quotes cut
    states = {r.header_subject: (r.state, r.error) for r in raws(env, box)}
    return {"result": result["state"], "snapshot": snapshot(env, box), "texts": texts,
            "states": states, "counts": counts(env, box)}, env  # fmt: skip


def test_the_helper_gives_exactly_what_parsing_in_the_worker_gives(
    app_env, tmp_path, dovecot, mail_user, monkeypatch
):
    _deliver(mail_user, 3 * parse_ahead.MIN_MESSAGES)
    started = []
    monkeypatch.setattr(ParseAhead, "submit", _spy(ParseAhead.submit, started))
    with_helper, _ = _fetch_into_new_database(app_env, tmp_path, dovecot, mail_user, "a.db")
    assert started
    assert started[0] >= parse_ahead.MIN_MESSAGES  # the helper did the parsing
    monkeypatch.setenv("MAILCHANNEL_PARSE_AHEAD", "0")
    alone, _ = _fetch_into_new_database(app_env, tmp_path, dovecot, mail_user, "b.db")
    assert with_helper == alone
    assert with_helper["states"]["Poison"][0] == "failed"
    assert "header block" in with_helper["states"]["Poison"][1]
    assert "Thanks, fixed now." in with_helper["texts"]
    assert not any("quoted back" in text for text in with_helper["texts"])


def _spy(submit, started: list):
    def spying(self, items, limits, marker):
        submit(self, items, limits, marker)
        if self._pool is not None:
            started.append(len(items))

    return spying


def test_a_helper_that_dies_costs_nothing(app_env, tmp_path, dovecot, mail_user, monkeypatch):
    """The helper is killed after it started: every message is still filed, in the worker."""
    _deliver(mail_user, 3 * parse_ahead.MIN_MESSAGES)
    original = ParseAhead.submit

    killed: list[int] = []

    def submit_then_die(self, items, limits, marker):
        original(self, items, limits, marker)
        if self._pool is not None and not killed:  # the first helper dies once it has work
            for process in list(self._pool._processes.values()):
                os.kill(process.pid, signal.SIGKILL)
                killed.append(process.pid)

    monkeypatch.setattr(ParseAhead, "submit", submit_then_die)
    got, env = _fetch_into_new_database(app_env, tmp_path, dovecot, mail_user, "c.db")
    assert killed  # the helper did start, and died
    assert got["result"] == "ok"
    assert got["counts"]["messages"] == 3 * parse_ahead.MIN_MESSAGES
    assert got["states"]["Poison"][0] == "failed"
    assert {state for subject, (state, _) in got["states"].items() if subject != "Poison"} == {
        "done"
    }


HOLD_SCRIPT = """
import sys, time
from webapp.mail.parse import DEFAULT_LIMITS
from webapp.services.ingest.parse_ahead import MIN_MESSAGES, ParseAhead
ahead = ParseAhead()
ahead.submit([(i, b"Subject: x\\r\\n\\r\\nhi\\r\\n") for i in range(MIN_MESSAGES)], DEFAULT_LIMITS, None)
print(*[p.pid for p in ahead._pool._processes.values()], flush=True)
time.sleep(60)
"""


def test_a_killed_worker_leaves_no_helper_behind():
    worker = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    helper = None
    try:
        helper = int(worker.stdout.readline().split()[0])
        assert _alive(helper)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(helper) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(helper)
    finally:
        worker.kill()
        worker.stdout.close()
        if helper is not None and _alive(helper):  # the test failed: leave no orphan either
            os.kill(helper, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_failing_job_does_not_wait_for_a_busy_helper(monkeypatch):
    """The job's timeout (or any error) ends the run at once: a busy helper is killed."""
    monkeypatch.setattr(parse_ahead, "_parse_chunk", _busy)  # inherited by the fork
    items = [(i, b"Subject: x\r\n\r\nhi\r\n") for i in range(parse_ahead.MIN_MESSAGES)]
    helpers = []
    try:
        with ParseAhead() as ahead:
            ahead.submit(items, DEFAULT_LIMITS, None)
            helpers = list(ahead._pool._processes.values())
            raise TimeoutError("the job's time is up")
    except TimeoutError:
        pass
    assert helpers
    assert all(p.exitcode == -signal.SIGKILL for p in helpers)


def _busy(*_args):
    time.sleep(15)  # waited for, the helper would end by itself (exit code 0) after this
