"""When fetches run: Continue, Fetch now, the scheduler and the sweep.

The database says what is due and what is held; Redis only rings the bell. A
fetch is "queued" while mailbox.fetch_queued_at is recent and "running" while its
lease is unexpired. Claiming the queued slot is one atomic UPDATE, so two clicks,
two schedulers or a scheduler and a sweep never enqueue two jobs for one mailbox;
a job lost by Redis leaves a stale fetch_queued_at that the sweep claims again.

A mailbox whose first fetch is done is polled by worker.jobs.poll_mailboxes, which the
worker runs without forking; the scheduler puts up to POLL_GROUP due mailboxes in one such
job (each still claims its own slot and takes its own lease). A first fetch, which may
read thousands of messages, gets a fetch_mailbox job of its own in a forked work horse.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from webapp.config import load_settings
from webapp.db import utcnow
from webapp.models import Mailbox, RawMessage
from webapp.models import message as states
from webapp.queue import get_queue
from webapp.services.fetching import leases, store
from webapp.services.push import leases as push_leases

log = logging.getLogger(__name__)

QUEUED_STALE = timedelta(minutes=3)  # a queued fetch not started by then was lost
UNPROCESSED_STALE = timedelta(minutes=2)  # stored but unprocessed for this long: a crash left it
FETCH_JOB_TIMEOUT = 1800  # a run stops itself after RUN_BUDGET_SECONDS (600)
# The scheduler ticks every SCHEDULE_TICK_SECONDS (worker/cron.py) and enqueues what falls due
# before the next tick's midpoint: a poll starts at most TICK - EARLY late, or EARLY early.
SCHEDULE_TICK_SECONDS = 5
DUE_EARLY = timedelta(seconds=2)
# A mailbox a watcher listens to in IDLE (services/push/) is polled only as a safety net.
WATCHED_POLL = timedelta(minutes=15)
POLL_GROUP = 10  # due mailboxes per poll job


def fetch_allowed(mailbox: Mailbox) -> bool:
    """Fetching is on, and the mailbox is enabled and verified."""
    return bool(
        mailbox.enabled
        and mailbox.fetching_enabled
        and mailbox.setup_complete
        and mailbox.verify_state == "ok"
        and not (mailbox.auth_type == "oauth" and mailbox.reauth_needed)  # no retry loop
    )


def _claim(db: Session, mailbox_id: int, job_id: str) -> bool:
    """Take the mailbox's queued slot unless a recent job holds it; commits."""
    now = utcnow()
    claimed = db.exec(
        update(Mailbox)
        .where(col(Mailbox.id) == mailbox_id)
        .where(
            or_(
                col(Mailbox.fetch_queued_at).is_(None),
                col(Mailbox.fetch_queued_at) < now - QUEUED_STALE,
            )
        )
        .values(fetch_queued_at=now, fetch_job_id=job_id)
    ).rowcount
    db.commit()
    return claimed == 1


def enqueue_fetch(
    mailbox_id: int,
    redis_url: str,
    queue_name: str,
    job_id: str | None = None,
    poll: bool = False,
) -> str:
    """A fetch job for one mailbox: a first fetch (forked), or with `poll` a poll (in process)."""
    if poll:
        return enqueue_poll([mailbox_id], redis_url, queue_name, job_id)
    return _enqueue("worker.jobs.fetch_mailbox", mailbox_id, redis_url, queue_name, job_id)


def enqueue_poll(
    mailbox_ids: list[int], redis_url: str, queue_name: str, job_id: str | None = None
) -> str:
    return _enqueue("worker.jobs.poll_mailboxes", mailbox_ids, redis_url, queue_name, job_id)


def _enqueue(function: str, argument, redis_url: str, queue_name: str, job_id: str | None) -> str:
    job = get_queue(redis_url, queue_name).enqueue(
        function,
        argument,
        job_id=job_id,
        job_timeout=FETCH_JOB_TIMEOUT,
        result_ttl=600,
        failure_ttl=86400,
    )
    return job.id


def _unclaim(db: Session, mailbox_ids: list[int]) -> None:
    """Redis is down: the requests stay in the database (due now) for the sweep."""
    db.exec(
        update(Mailbox)
        .where(col(Mailbox.id).in_(mailbox_ids))
        .values(fetch_queued_at=None, fetch_job_id=None, next_fetch_due_at=utcnow())
    )
    db.commit()


def _polled(db: Session, mailbox_ids: list[int]) -> set[int]:
    """Which of these mailboxes have had their first fetch (a poll job serves them)."""
    query = select(Mailbox.id).where(
        col(Mailbox.id).in_(mailbox_ids), col(Mailbox.initial_fetch_done).is_(True)
    )
    return set(db.exec(query).all())


def request_fetch(db: Session, mailbox_id: int, redis_url: str, queue_name: str) -> str | None:
    """Fetch now: enqueue a fetch unless one is queued or running; the new job's id, or None.

    If Redis is down the request stays in the database (due now) for the sweep, and
    the RedisError is raised for the caller to report.
    """
    if leases.held(db, mailbox_id):
        return None
    job_id = uuid.uuid4().hex
    if not _claim(db, mailbox_id, job_id):
        return None
    try:
        enqueue_fetch(
            mailbox_id, redis_url, queue_name, job_id, poll=bool(_polled(db, [mailbox_id]))
        )
    except RedisError:
        _unclaim(db, [mailbox_id])
        raise
    return job_id


def request_polls(db: Session, mailbox_ids: list[int], redis_url: str, queue_name: str) -> int:
    """Enqueue the polls of these mailboxes, POLL_GROUP to a job; how many were claimed.

    Each mailbox claims its own queued slot (the group's job id), so a mailbox already
    queued or running elsewhere is left out of the group."""
    count = 0
    for start in range(0, len(mailbox_ids), POLL_GROUP):
        job_id = uuid.uuid4().hex
        group = [
            m
            for m in mailbox_ids[start : start + POLL_GROUP]
            if not leases.held(db, m) and _claim(db, m, job_id)
        ]
        if not group:
            continue
        try:
            enqueue_poll(group, redis_url, queue_name, job_id)
        except RedisError:
            _unclaim(db, group)
            raise
        count += len(group)
    return count


def fetch_identity(mailbox: Mailbox) -> str:
    """Which account a mailbox reads: when it changes, cursors and backlog start over.

    Not its folders: each keeps its own cursor, so choosing another one starts nothing over."""
    family = "pop3" if mailbox.protocol.startswith("pop3") else "imap"
    user = (mailbox.username or mailbox.email_address).lower()
    return f"{family}|{mailbox.host.lower()}|{user}"[:1200]


def turn_on_fetching(
    db: Session, mailbox: Mailbox, redis_url: str | None = None, queue_name: str | None = None
) -> str | None:
    """Continue on Mailbox Setup: fetching on, the first fetch enqueued at once.

    Until the first complete fetch every message is flagged backlog (already in the
    mailbox, so never acknowledged). Enabled stays as the admin set it: a disabled
    mailbox is set up but stays offline, and nothing is enqueued for it. Returns the
    job id (None if none was enqueued).
    """
    now = utcnow()
    identity = fetch_identity(mailbox)
    if mailbox.fetch_identity != identity:
        if mailbox.fetch_identity is not None:
            # Another account: its mail is a new backlog, and UIDs of the old one mean nothing.
            mailbox.initial_fetch_done = False
            store.forget_positions(db, mailbox.id)
        mailbox.fetch_identity = identity
    mailbox.setup_complete = mailbox.fetching_enabled = True
    mailbox.fetching_since = mailbox.fetching_since or now
    mailbox.next_fetch_due_at = now
    mailbox.updated_at = now
    db.add(mailbox)
    db.commit()
    if not mailbox.enabled:
        return None  # Enable (on the mailbox page or in the form) lets the scheduler fetch it
    if redis_url is None:
        settings = load_settings()
        redis_url, queue_name = settings.redis_url, queue_name or settings.queue_name
    if not redis_url:
        return None  # no queue configured: the scheduler picks it up when one is
    return request_fetch(db, mailbox.id, redis_url, queue_name or "mailchannel")


def due_mailbox_ids(db: Session, now: datetime | None = None) -> list[int]:
    """Mailboxes that fetch, are due (or fall due within DUE_EARLY) and have no recent queued job.

    A watched mailbox (push) is due only when its last fetch is WATCHED_POLL old as well.
    """
    now = now or utcnow()
    query = (
        select(Mailbox.id)
        .where(
            col(Mailbox.enabled).is_(True),
            col(Mailbox.fetching_enabled).is_(True),
            col(Mailbox.setup_complete).is_(True),
            Mailbox.verify_state == "ok",
            or_(
                col(Mailbox.next_fetch_due_at).is_(None),
                col(Mailbox.next_fetch_due_at) <= now + DUE_EARLY,
            ),
            or_(
                col(Mailbox.fetch_queued_at).is_(None),
                col(Mailbox.fetch_queued_at) < now - QUEUED_STALE,
            ),
            or_(
                col(Mailbox.id).not_in(push_leases.watched_ids(now)),
                col(Mailbox.last_fetch_at).is_(None),
                col(Mailbox.last_fetch_at) <= now - WATCHED_POLL + DUE_EARLY,
            ),
        )
        .order_by(col(Mailbox.next_fetch_due_at))
    )
    return list(db.exec(query).all())


def schedule_due(db: Session, redis_url: str, queue_name: str) -> int:
    """The scheduler's tick: due polls grouped POLL_GROUP to a job, first fetches one a job."""
    due = due_mailbox_ids(db)
    polled = _polled(db, due) if due else set()
    count = request_polls(db, [m for m in due if m in polled], redis_url, queue_name)
    return count + sum(
        1
        for mailbox_id in due
        if mailbox_id not in polled and request_fetch(db, mailbox_id, redis_url, queue_name)
    )


def sweep_fetches(db: Session, redis_url: str, queue_name: str) -> int:
    """Heal lost jobs: due fetches, and stored messages a crash left unprocessed."""
    count = schedule_due(db, redis_url, queue_name)
    cutoff = utcnow() - UNPROCESSED_STALE
    stuck = db.exec(
        select(RawMessage.mailbox_id)
        .where(RawMessage.state == states.NEW, col(RawMessage.fetched_at) < cutoff)
        .distinct()
    ).all()
    for mailbox_id in stuck:
        if request_fetch(db, mailbox_id, redis_url, queue_name):
            count += 1
    return count
