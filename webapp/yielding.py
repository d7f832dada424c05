"""Background work gives way to people: while pages are being answered on this host, a
worker between two messages commits what it holds and waits until they are done.

On a small machine the first fetch of a big mailbox takes every CPU: the worker, its
parsing helper, the mail server and the database server. WORKER_NICE lowers the worker's
own priority, not the database server's nor the mail server's, and their share is what
slows the pages (issue 14, part 4). So the web notes each request it answers in Redis, in
a sorted set per host scored by when the note lapses (NOTE_SECONDS after the request
started), and a worker asks between two messages, at most every CHECK_SECONDS.

A pause is bounded: at most MAX_PAUSE, then the worker runs at least MIN_RUN before it
gives way again, so a stream of requests slows a fetch but never stops it. Without Redis,
or with WORKER_YIELD=0, nothing waits. Workers on another host than the web never wait:
they do not share its CPUs.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# A request's note lapses after this: a web process that died leaves nothing behind, and a
# download streaming to a slow client for minutes is not a person waiting for a page.
NOTE_SECONDS = 2.0
MAX_PAUSE = 0.25  # the longest a worker waits at a time
MIN_RUN = 0.025  # then it works at least this long before it gives way again
CHECK_SECONDS = 0.005  # a worker asks Redis at most this often
STEP = 0.004  # while waiting, it asks again this often
RETRY_SECONDS = 30.0  # after Redis failed to answer, the web stops noting requests this long


def requests_key(host: str | None = None) -> str:
    """The sorted set of the requests being answered on `host` (this one by default)."""
    return f"mailchannel:requests:{host or socket.gethostname()}"


class Requests:
    """The web's side: notes a request while it is answered."""

    def __init__(self, redis: Redis, host: str | None = None) -> None:
        self.redis, self.key = redis, requests_key(host)
        self._quiet_until = 0.0

    def started(self) -> str | None:
        """Note a request; its token, or None when Redis did not answer (nothing waits; and
        for RETRY_SECONDS no page asks again, so that no page waits for a Redis that is down)."""
        if time.monotonic() < self._quiet_until:
            return None
        token = uuid.uuid4().hex
        try:
            self.redis.zadd(self.key, {token: time.time() + NOTE_SECONDS})
        except RedisError as exc:
            log.warning("noting a request in Redis failed (workers will not give way): %s", exc)
            self._quiet_until = time.monotonic() + RETRY_SECONDS
            return None
        return token

    def ended(self, token: str | None) -> None:
        if token is None:
            return
        try:
            self.redis.zrem(self.key, token)
        except RedisError as exc:  # the note lapses by itself
            log.debug("removing a request's note from Redis failed: %s", exc)


class GiveWay:
    """The worker's side: `give_way(before)` waits while requests are noted on this host,
    after `before()` (the caller commits what it holds). Seconds waited are added up in
    `waited`."""

    def __init__(
        self,
        redis: Redis,
        host: str | None = None,
        *,
        max_pause: float = MAX_PAUSE,
        min_run: float = MIN_RUN,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.redis, self.key = redis, requests_key(host)
        self.max_pause, self.min_run, self.sleep = max_pause, min_run, sleep
        self.waited = 0.0
        self.pauses = 0
        self._next_check = 0.0
        self._swept = 0.0

    def __call__(self, before: Callable[[], None] | None = None) -> float:
        """Wait while pages are answered (bounded); the seconds waited."""
        now = time.monotonic()
        if now < self._next_check:
            return 0.0
        self._next_check = now + CHECK_SECONDS
        if not self.busy():
            return 0.0
        if before is not None:
            before()
        started = time.monotonic()
        while time.monotonic() - started < self.max_pause and self.busy():
            self.sleep(STEP)
        ended = time.monotonic()
        self._next_check = ended + self.min_run
        self.waited += ended - started
        self.pauses += 1
        return ended - started

    def busy(self) -> bool:
        """True while a request is noted on this host (Redis not answering: False)."""
        now = time.time()
        try:
            if now - self._swept > NOTE_SECONDS:  # drop the notes of web processes that died
                self._swept = now
                self.redis.zremrangebyscore(self.key, "-inf", now)
            return bool(self.redis.zcount(self.key, now, "+inf"))
        except RedisError as exc:
            log.debug("asking Redis for requests failed: %s", exc)
            return False


_worker: GiveWay | None = None


def configure_worker(redis_url: str | None, enabled: bool = True) -> GiveWay | None:
    """Make this process (and the work horses it forks) give way to the pages."""
    global _worker
    _worker = GiveWay(connect(redis_url)) if redis_url and enabled else None
    return _worker


def connect(redis_url: str) -> Redis:
    """A Redis client that gives up quickly: neither a page nor a fetch waits on Redis."""
    return Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)


def give_way(before: Callable[[], None] | None = None) -> float:
    """Between two pieces of background work: wait while pages are answered here, after
    `before()`; a no-op unless configure_worker() was called."""
    return _worker(before) if _worker is not None else 0.0


def waited() -> float:
    """Seconds this process has waited for pages so far (a fetch run notes its share)."""
    return _worker.waited if _worker is not None else 0.0
