"""Running a watcher for the push tests: in a thread of the test, or as its own process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

from sqlmodel import select

from webapp.config import PROJECT_ROOT
from webapp.db import new_session
from webapp.models import Case, WatchLease

# Seconds, not minutes: tests see reconnects and takeovers happen while they wait.
FAST = {
    "MAILCHANNEL_WATCH_BACKOFF_BASE": "0.2",
    "MAILCHANNEL_WATCH_BACKOFF_MAX": "1",
    "MAILCHANNEL_WATCH_LEASE_TTL": "4",
    "MAILCHANNEL_WATCH_RECONCILE": "0.3",
}


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "") -> object:
    """Poll until condition() is truthy; its value. Fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)


@contextlib.contextmanager
def watcher_thread(env: dict, **kwargs) -> Iterator[object]:
    """A Watcher running in a thread of the test process, stopped (connections closed) after."""
    from webapp.services.push.watcher import Watcher

    watcher = Watcher(
        env["DATABASE_URL"],
        env["REDIS_URL"],
        env["RQ_QUEUE"],
        env["MAIL_CA_BUNDLE"],
        reconcile_seconds=float(FAST["MAILCHANNEL_WATCH_RECONCILE"]),
        **kwargs,
    )
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        yield watcher
    finally:
        watcher.stop()
        thread.join(timeout=15)


def watcher_process(env: dict) -> subprocess.Popen:
    """`python -m worker.watch`, as the Procfile starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "worker.watch"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env, **FAST},
        stdin=subprocess.DEVNULL,
    )


def lease(env: dict, mailbox_id: int) -> WatchLease | None:
    with new_session(env["DATABASE_URL"]) as db:
        return db.get(WatchLease, mailbox_id)


def leases(env: dict) -> list[WatchLease]:
    with new_session(env["DATABASE_URL"]) as db:
        return list(db.exec(select(WatchLease)).all())


def listening(env: dict, mailbox_id: int) -> bool:
    row = lease(env, mailbox_id)
    return row is not None and row.watching_since is not None


def reconnects(env: dict, mailbox_id: int) -> int:
    row = lease(env, mailbox_id)
    return len(row.reconnects.split()) if row is not None else 0


def case_with_subject(env: dict, subject: str) -> Case | None:
    with new_session(env["DATABASE_URL"]) as db:
        return db.exec(select(Case).where(Case.subject == subject)).first()
