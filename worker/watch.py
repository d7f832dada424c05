"""The watcher process (`python -m worker.watch`, the Procfile's `watcher:` line).

Holds an IMAP IDLE connection on each chosen folder of its share of the mailboxes and asks
for a fetch the moment the server announces mail (webapp/services/push/). Run as many as
you like, on any hosts: they split the mailboxes through leases in the database.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import sys

from webapp import crypto
from webapp.config import load_settings
from webapp.services.push.watcher import Watcher


def _more_files() -> None:
    """Every watched folder is a socket: allow as many as the system lets this process open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _fewer_arenas() -> None:
    """glibc gives each thread its own malloc arena; two are plenty for threads that mostly
    wait, and keep the memory per watched folder small (M_ARENA_MAX, before any thread)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("RQ_LOG_LEVEL") or "WARNING",
        format="%(asctime)s watcher %(levelname)s %(name)s: %(message)s",
    )
    settings = load_settings()
    crypto.configure(settings.encryption_keys)
    if not settings.redis_url:
        print("watcher: REDIS_URL is not set; `make run` sets it.", file=sys.stderr)
        return 2
    _more_files()
    _fewer_arenas()
    os.nice(settings.worker_nice)  # background work yields the CPU to the web pages
    watcher = Watcher(
        settings.database_url,
        settings.redis_url,
        settings.queue_name,
        settings.mail_ca_bundle,
        reconcile_seconds=float(os.environ.get("MAILCHANNEL_WATCH_RECONCILE") or 2),
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: watcher.stop())
    watcher.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
