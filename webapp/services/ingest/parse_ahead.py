"""Parse the next messages of a batch in a second process while this one files the previous.

Filing is bound to the database and to one process; parsing (MIME, charsets, HTML to
text, finding the reply above the quotes) is pure CPU. A fetch job with a batch of new
mail hands the raw bytes to one helper process, forked from the worker, and takes the
results in order: on a machine with two CPUs or more, parsing costs the fetch almost
nothing. A helper that dies, or a message that takes longer than the parse time limit,
never stops a fetch: that message is marked failed with the reason and the rest is parsed
in this process as before. The helper dies with its parent (Linux PR_SET_PDEATHSIG), so a
killed worker leaves nothing behind.

Turned off with MAILCHANNEL_PARSE_AHEAD=0, and on a machine with a single CPU.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import os
import signal
from collections.abc import Hashable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

from webapp.mail.parse import (
    DEFAULT_LIMITS,
    ParsedMessage,
    ParseError,
    ParseLimits,
    TooLarge,
    parse_message,
)
from webapp.mail.reply import extract_reply
from webapp.models import Mailbox

log = logging.getLogger(__name__)

MIN_MESSAGES = 20  # fewer new messages than this: forking a helper is not worth it
CHUNK = 10  # messages per task: fewer round trips to the helper
SLACK_SECONDS = 10.0  # beyond the parse time limit, for the helper's own overhead


@dataclass
class Outcome:
    """What parsing one message gave: `parsed` (with its reply_text), or why not."""

    parsed: ParsedMessage | None = None
    too_large: str | None = None
    error: str | None = None


def limits_for(mailbox: Mailbox) -> ParseLimits:
    """The parse limits of a mailbox: its own raw size limit, the defaults for the rest."""
    return replace(DEFAULT_LIMITS, max_raw_bytes=mailbox.max_message_bytes)


def parse_one(data: bytes, limits: ParseLimits, marker: str | None) -> Outcome:
    """Parse in this process, and find the reply above the quotes (End of Message Marker)."""
    try:
        parsed = parse_message(data, limits)
    except TooLarge as exc:
        return Outcome(too_large=exc.reason)
    except ParseError as exc:
        return Outcome(error=exc.reason)
    parsed.reply_text = extract_reply(parsed.text, marker)
    return Outcome(parsed=parsed)


def _parse_chunk(items: list[tuple[int, bytes]], limits: ParseLimits, marker: str | None):
    return [(raw_id, parse_one(data, limits, marker)) for raw_id, data in items]


def _helper_init() -> None:
    """In the helper: SIGKILL when the worker that forked it dies (Linux), ignore ^C, and
    never collect what the fork inherited: a database connection that was garbage at the
    fork must not be finalized here, on a socket the worker still shares."""
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def enabled() -> bool:
    if os.environ.get("MAILCHANNEL_PARSE_AHEAD", "1") == "0" or os.name != "posix":
        return False
    return len(os.sched_getaffinity(0)) > 1


class ParseAhead:
    """One helper process per fetch job, started when a batch is large enough."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._failed = not enabled()
        self._futures: dict[int, Future] = {}
        self._results: dict[int, Outcome] = {}
        self._seconds = 0.0

    def submit(self, items: list[tuple[Hashable, bytes]], limits: ParseLimits, marker: str | None):
        """Start parsing these (key, bytes) pairs, in order, in the helper; a key given
        before (and not taken or forgotten since) is not parsed again."""
        items = [(k, d) for k, d in items if k not in self._futures and k not in self._results]
        if self._failed or len(items) < MIN_MESSAGES:
            return
        try:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("fork"),
                    initializer=_helper_init,
                )
            self._seconds = limits.max_parse_seconds * CHUNK + SLACK_SECONDS
            for start in range(0, len(items), CHUNK):
                chunk = items[start : start + CHUNK]
                future = self._pool.submit(_parse_chunk, chunk, limits, marker)
                for raw_id, _ in chunk:
                    self._futures[raw_id] = future
        except (OSError, BrokenProcessPool, RuntimeError) as exc:
            self._give_up(f"could not start the parsing helper: {exc}")

    def take(self, raw_id: Hashable) -> Outcome | None:
        """The outcome for this key if the helper parsed it, else None (parse it here)."""
        future = self._futures.pop(raw_id, None)
        if raw_id in self._results:
            return self._results.pop(raw_id)
        if future is None:
            return None
        try:
            for done_id, outcome in future.result(timeout=self._seconds):
                self._results[done_id] = outcome
        except FutureTimeout:  # stuck beyond the time limit: this process tries (and the job
            self._give_up("the parsing helper took too long")  # timeout bounds it, as before)
            return None
        except Exception as exc:  # the helper died (BrokenProcessPool) or hit a bug
            self._give_up(f"the parsing helper failed: {exc!r}")
            return None
        return self._results.pop(raw_id, None)

    def forget(self) -> None:
        """Drop what was submitted and never taken (a message that was stored already)."""
        self._futures.clear()
        self._results.clear()

    def _give_up(self, why: str) -> None:
        log.warning("%s; parsing in the worker itself from now on", why)
        self._failed = True
        self._futures.clear()
        self.close(kill=True)

    def close(self, kill: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:  # a helper stuck on a message: do not wait for it
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                if process.is_alive():
                    process.kill()
        pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParseAhead:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # After an exception (the job's timeout included) do not wait for the helper.
        self.close(kill=exc_type is not None)
