"""One IDLE connection on one folder of one mailbox, kept up by its own thread.

The thread only listens and reports (new mail, connected, dropped, no IDLE, re-authorization
needed) to the watcher, which rings the fetch bell: a session never fetches and never
writes to the database, except through an OAuth refresh when it logs in.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from webapp import crypto
from webapp.db import new_session, utcnow
from webapp.mail.errors import MailError
from webapp.mail.idle import IdleConnection, IdleNotOffered
from webapp.models import Mailbox
from webapp.services import oauth
from webapp.services.fetching.verify import connect_with_refresh

log = logging.getLogger(__name__)


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass
class Timing:
    """How a session keeps its connection up; every figure can be set from the environment."""

    idle_restart: float = 25 * 60  # DONE, NOOP, IDLE again at least this often
    backoff_base: float = 1.0  # first retry after about this long, doubling, with jitter
    backoff_max: float = 300.0
    token_margin: float = 300.0  # reconnect with a fresh token this long before it expires
    stable_after: float = 60.0  # a connection up this long resets the backoff

    @classmethod
    def from_env(cls) -> Timing:
        return cls(
            idle_restart=_env("MAILCHANNEL_WATCH_IDLE_RESTART", cls.idle_restart),
            backoff_base=_env("MAILCHANNEL_WATCH_BACKOFF_BASE", cls.backoff_base),
            backoff_max=_env("MAILCHANNEL_WATCH_BACKOFF_MAX", cls.backoff_max),
            token_margin=_env("MAILCHANNEL_WATCH_TOKEN_MARGIN", cls.token_margin),
            stable_after=_env("MAILCHANNEL_WATCH_STABLE_AFTER", cls.stable_after),
        )

    def backoff(self, failures: int) -> float:
        """Exponential backoff with full jitter between half and all of the step."""
        step = min(self.backoff_max, self.backoff_base * 2 ** max(failures - 1, 0))
        return step * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Report:
    """What a session tells the watcher. kind: listening | new_mail | dropped | token |
    no_idle | reauth | gone."""

    session: FolderSession
    kind: str
    detail: str = ""


class FolderSession:
    """Keeps one IDLE connection up until stop(): reconnects with backoff, renews tokens."""

    def __init__(
        self,
        database_url: str,
        ca_bundle: str | None,
        mailbox_id: int,
        folder: str,
        report: Callable[[Report], None],
        timing: Timing,
    ) -> None:
        self.database_url, self.ca_bundle = database_url, ca_bundle
        self.mailbox_id, self.folder = mailbox_id, folder
        self._report, self.timing = report, timing
        self._stop = threading.Event()
        self._conn: IdleConnection | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"idle-{mailbox_id}-{folder}", daemon=True
        )

    def start(self) -> FolderSession:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the connection at once; the thread ends by itself."""
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.interrupt()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def report(self, kind: str, detail: str = "") -> None:
        if not self._stop.is_set():
            self._report(Report(self, kind, detail))

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                conn, token_left = self._connect()
            except IdleNotOffered:
                self.report("no_idle")
                return
            except oauth.ReauthNeeded as exc:
                self.report("reauth", str(exc))
                return
            except LookupError:
                self.report("gone")
                return
            except (MailError, oauth.OAuthFailed, crypto.SecretUnreadable) as exc:
                failures += 1
                self.report("dropped", str(exc))
                self._stop.wait(self.timing.backoff(failures))
                continue
            except Exception as exc:  # noqa: BLE001 - a session must never end silently
                log.exception("IDLE session of mailbox %s failed", self.mailbox_id)
                failures += 1
                self.report("dropped", f"unexpected {type(exc).__name__}")
                self._stop.wait(self.timing.backoff(failures))
                continue
            self._conn = conn
            if self._stop.is_set():  # stop() came while we were connecting
                conn.close()
                return
            self.report("listening")
            up_since = time.monotonic()
            outcome = self._listen(conn, token_left)
            self._conn = None
            conn.close()
            if self._stop.is_set():
                return
            if outcome == "token":
                self.report("token", "reconnecting with a fresh access token")
                continue  # planned: no backoff
            failures = 1 if time.monotonic() - up_since > self.timing.stable_after else failures + 1
            self.report("dropped", outcome)
            self._stop.wait(self.timing.backoff(failures))

    def _connect(self) -> tuple[IdleConnection, float | None]:
        """Log in (OAuth: with a fresh token), EXAMINE the folder, IDLE. Seconds the token has left."""
        with new_session(self.database_url) as db:
            mailbox = db.get(Mailbox, self.mailbox_id)
            if mailbox is None:
                raise LookupError(self.mailbox_id)

            def listen(settings) -> IdleConnection:
                conn = IdleConnection(settings, self.folder)
                try:
                    conn.start()
                except BaseException:
                    conn.close()
                    raise
                return conn

            conn = connect_with_refresh(db, mailbox, self.ca_bundle, listen)
            expires = mailbox.token_expires_at if mailbox.auth_type == "oauth" else None
        if expires is None:
            return conn, None
        if expires.tzinfo is None:
            from datetime import UTC

            expires = expires.replace(tzinfo=UTC)
        return conn, (expires - utcnow()).total_seconds()

    def _listen(self, conn: IdleConnection, token_left: float | None) -> str:
        """Wait in IDLE until the token needs renewing ("token") or the connection drops (why)."""
        started = time.monotonic()
        renew_at = None
        if token_left is not None:
            renew_at = started + max(token_left - self.timing.token_margin, 5.0)
        restart_at = started + self.timing.idle_restart
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if renew_at is not None and now >= renew_at:
                    return "token"
                if now >= restart_at:
                    restart_at = now + self.timing.idle_restart
                    if conn.restart():
                        self.report("new_mail")
                    continue
                until = min(restart_at, renew_at or restart_at) - now
                if conn.wait(until):
                    self.report("new_mail")
        except MailError as exc:
            return str(exc)
        return "stopped"
