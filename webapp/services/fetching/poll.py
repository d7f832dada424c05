"""Poll several mailboxes in one job: the scheduler's groups and the single polls of push.

Each mailbox keeps its own lease and its own queued slot (services/fetching/fetch.py and
schedule.py): grouping only saves the job's own start-up. The mailboxes of a group run on a
few threads, so one whose server hangs (its socket timeouts end it) delays none of the
others; most of a poll is waiting for the server, so the threads overlap well.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from webapp.services.fetching import fetch

log = logging.getLogger(__name__)

POLL_THREADS = 4  # mailboxes of one group polled at the same time


def poll_mailboxes(database_url: str, mailbox_ids: list[int], ca_bundle: str | None) -> list:
    """Fetch each mailbox (each under its own lease); one result per mailbox, in order.

    An unexpected error in one mailbox is recorded on it (fetch_mailbox does) and logged
    here; the others go on."""
    if len(mailbox_ids) == 1:
        return [_poll_one(database_url, mailbox_ids[0], ca_bundle)]
    pool = ThreadPoolExecutor(min(POLL_THREADS, len(mailbox_ids)), thread_name_prefix="poll")
    try:
        futures = [pool.submit(_poll_one, database_url, m, ca_bundle) for m in mailbox_ids]
        return [future.result() for future in futures]
    finally:
        # Not waiting on a job timeout (SIGALRM in this thread): a run still going ends on its
        # own socket timeouts and releases its lease; queued ones are dropped for the sweep.
        pool.shutdown(wait=False, cancel_futures=True)


def _poll_one(database_url: str, mailbox_id: int, ca_bundle: str | None) -> dict:
    try:
        return {"mailbox": mailbox_id, **fetch.fetch_mailbox(database_url, mailbox_id, ca_bundle)}
    except Exception:  # noqa: BLE001 - recorded on the mailbox by the fetch; the group goes on
        log.exception("poll of mailbox %s stopped on an unexpected error", mailbox_id)
        return {"mailbox": mailbox_id, "state": "error"}
