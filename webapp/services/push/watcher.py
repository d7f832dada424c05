"""The watcher: IDLE sessions for the mailboxes it leases, and the fetch bell they ring.

One thread (run()) owns the database work: every few seconds it beats its heartbeat,
renews its watch leases, re-reads the watchable mailboxes (so an edit, a disabled, deleted
or newly continued mailbox reaches it within seconds) and takes or gives back leases to
keep its fair share. Each chosen folder of a leased mailbox has its own FolderSession
thread. When one reports new mail, or (re)connects, the watcher asks for a fetch through
services.fetching.schedule.request_fetch, the single-flight path of Fetch now; when a fetch
is running it asks again once that one is over, so mail that arrived during it is fetched.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError
from sqlmodel import Session

from webapp.db import new_session, utcnow
from webapp.services.fetching import leases as fetch_leases
from webapp.services.fetching.leases import new_holder
from webapp.services.fetching.schedule import request_fetch
from webapp.services.push import leases, state
from webapp.services.push.session import FolderSession, Report, Timing
from webapp.services.push.targets import Target, watchable

log = logging.getLogger(__name__)

NO_IDLE_RECHECK = 3600.0  # a server without IDLE is asked again after an hour
RETRY_BUSY = 1.0  # a fetch is running: ask again this often until it is over


@dataclass
class WatchedMailbox:
    target: Target
    sessions: dict[str, FolderSession] = field(default_factory=dict)
    listening: set[str] = field(default_factory=set)
    no_idle_since: float | None = None
    acquired: float = field(default_factory=time.monotonic)


class Watcher:
    """Run with run(); stop() from a signal handler or another thread."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        queue_name: str,
        ca_bundle: str | None = None,
        *,
        reconcile_seconds: float = 2.0,
        timing: Timing | None = None,
        holder: str | None = None,
    ) -> None:
        self.database_url, self.redis_url, self.queue_name = database_url, redis_url, queue_name
        self.ca_bundle = ca_bundle
        self.reconcile_seconds = reconcile_seconds
        self.timing = timing or Timing.from_env()
        self.holder = holder or new_holder()
        self.boxes: dict[int, WatchedMailbox] = {}
        self.targets: dict[int, Target] = {}  # the watchable mailboxes at the last turn
        self.pending: dict[int, float] = {}  # mailbox id -> when to ask for its fetch
        self.reports: queue.Queue[Report | None] = queue.Queue()
        self._stopping = False

    # -- the loop -------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True
        self.reports.put(None)

    def run(self) -> None:
        db = new_session(self.database_url)
        next_reconcile = 0.0
        try:
            while not self._stopping:
                if time.monotonic() >= next_reconcile:
                    self._guarded(db, self.reconcile)
                    next_reconcile = time.monotonic() + self.reconcile_seconds
                self._guarded(db, self.ring_pending)
                wait = next_reconcile - time.monotonic()
                if self.pending:
                    wait = min(wait, max(min(self.pending.values()) - time.monotonic(), 0.05))
                try:
                    report = self.reports.get(timeout=max(wait, 0.0))
                except queue.Empty:
                    continue
                while report is not None:
                    self._guarded(db, lambda d, r=report: self.handle(d, r))
                    try:
                        report = self.reports.get_nowait()
                    except queue.Empty:
                        report = None
        finally:
            for mailbox_id in list(self.boxes):
                self._stop_sessions(mailbox_id)
            try:
                leases.leave(db, self.holder)
            finally:
                db.close()

    def _guarded(self, db: Session, step) -> None:
        try:
            step(db)
            db.commit()  # no transaction stays open between steps (PostgreSQL: idle in transaction)
        except Exception:  # noqa: BLE001 - a database or Redis hiccup: the next turn retries
            log.exception("watcher %s: a step failed; retrying", self.holder)
            db.rollback()

    # -- leases and mailboxes -------------------------------------------------------

    def reconcile(self, db: Session) -> None:
        """Heartbeat, renew, follow edits, and take or give back mailboxes to a fair share."""
        leases.heartbeat(db, self.holder)
        targets = {t.mailbox_id: t for t in watchable(db)}
        self.targets = targets
        held = leases.renew_all(db, self.holder)
        for mailbox_id in held - set(self.boxes):
            leases.release(db, mailbox_id, self.holder)  # left from an earlier turn
        for mailbox_id, box in list(self.boxes.items()):
            target = targets.get(mailbox_id)
            if mailbox_id not in held or target is None:
                self._drop(db, mailbox_id, release=mailbox_id in held)
            elif target.fingerprint != box.target.fingerprint:
                self._stop_sessions(mailbox_id)
                self.boxes[mailbox_id] = WatchedMailbox(target)
                state.listening(db, mailbox_id, self.holder, None)
                self._start_sessions(db, mailbox_id)
            elif box.no_idle_since and time.monotonic() - box.no_idle_since > NO_IDLE_RECHECK:
                box.no_idle_since = None
                self._start_sessions(db, mailbox_id)
        cap = leases.fair_share(len(targets), leases.live_watchers(db))
        surplus = sorted(self.boxes.values(), key=lambda b: b.acquired)[cap:]
        for box in surplus:  # another watcher joined: hand these over
            self._drop(db, box.target.mailbox_id, release=True)
        others = leases.taken_by_others(db, self.holder)
        for mailbox_id, target in targets.items():
            if len(self.boxes) >= cap:
                break
            if mailbox_id in self.boxes or mailbox_id in others:
                continue
            if leases.acquire(db, mailbox_id, self.holder):
                self.boxes[mailbox_id] = WatchedMailbox(target)
                self._start_sessions(db, mailbox_id)

    def _connections(self, db: Session, account: str) -> int:
        """The account's connections: this watcher's sessions, and for each mailbox of the
        account another watcher holds, one per chosen folder (what it may have opened).

        Counted after our own lease is taken, from the others' leases: of two watchers
        starting on one account at once, each sees the other's lease and leaves room for
        all its folders, so together they stay under the provider's limit."""
        own = sum(len(b.sessions) for b in self.boxes.values() if b.target.account == account)
        elsewhere = [  # the account's other mailboxes: most accounts have none (no query)
            t for i, t in self.targets.items() if t.account == account and i not in self.boxes
        ]
        if not elsewhere:
            return own
        others = leases.taken_by_others(db, self.holder)
        return own + sum(len(t.folders) for t in elsewhere if t.mailbox_id in others)

    def _start_sessions(self, db: Session, mailbox_id: int) -> None:
        box = self.boxes[mailbox_id]
        target = box.target
        room = target.account_limit - self._connections(db, target.account)
        for folder in target.folders[: max(room, 0)]:
            box.sessions[folder] = FolderSession(
                self.database_url,
                self.ca_bundle,
                mailbox_id,
                folder,
                self.reports.put,
                self.timing,
            ).start()
        if len(box.sessions) < len(target.folders):
            left = len(target.folders) - len(box.sessions)
            state.limited(
                db,
                mailbox_id,
                self.holder,
                f"The provider's connection limit is reached: {left} of "
                f"{len(target.folders)} folders are polled instead.",
            )

    def _stop_sessions(self, mailbox_id: int) -> None:
        box = self.boxes.get(mailbox_id)
        if box is None:
            return
        for session in box.sessions.values():
            session.stop()
        box.sessions.clear()
        box.listening.clear()

    def _drop(self, db: Session, mailbox_id: int, release: bool) -> None:
        self._stop_sessions(mailbox_id)
        self.boxes.pop(mailbox_id, None)
        self.pending.pop(mailbox_id, None)
        if release:
            leases.release(db, mailbox_id, self.holder)

    # -- what sessions report ---------------------------------------------------------

    def handle(self, db: Session, report: Report) -> None:
        session = report.session
        log.info("mailbox %s, %s: %s", session.mailbox_id, session.folder, report.kind)
        box = self.boxes.get(session.mailbox_id)
        if box is None or box.sessions.get(session.folder) is not session:
            return  # a session stopped meanwhile: its news no longer counts
        mailbox_id, holder = session.mailbox_id, self.holder
        if report.kind == "listening":
            box.listening.add(session.folder)
            if box.listening >= set(box.target.folders):  # else polled, for the others
                state.listening(db, mailbox_id, holder, utcnow())
            state.event(db, mailbox_id, holder, f"Connected to {session.folder}; checking for mail")
            self.ring(mailbox_id)  # mail may have come while we were not listening
        elif report.kind == "new_mail":
            state.event(db, mailbox_id, holder, f"New mail in {session.folder}")
            self.ring(mailbox_id)
        elif report.kind in ("dropped", "token"):
            box.listening.discard(session.folder)
            state.reconnect(db, mailbox_id, holder, report.detail or None)
        elif report.kind == "no_idle":
            self._stop_sessions(mailbox_id)
            box.no_idle_since = time.monotonic()
            state.no_idle(db, mailbox_id, holder)
        else:  # reauth or gone: the next reconcile finds the mailbox unwatchable and lets go
            self._stop_sessions(mailbox_id)
            state.listening(db, mailbox_id, holder, None)

    # -- the fetch bell ----------------------------------------------------------------

    def ring(self, mailbox_id: int) -> None:
        self.pending[mailbox_id] = 0.0

    def ring_pending(self, db: Session) -> None:
        """Ask for the fetches that are due; a running fetch means: ask again after it."""
        now = time.monotonic()
        for mailbox_id, at in list(self.pending.items()):
            if at > now:
                continue
            try:
                job = request_fetch(db, mailbox_id, self.redis_url, self.queue_name)
            except RedisError:
                log.warning("watcher: Redis refused the fetch of mailbox %s", mailbox_id)
                self.pending[mailbox_id] = now + 2 * RETRY_BUSY
                continue
            if job is None and fetch_leases.held(db, mailbox_id):
                self.pending[mailbox_id] = now + RETRY_BUSY
            else:  # enqueued now, or a queued job that has not started will see the mail
                del self.pending[mailbox_id]
