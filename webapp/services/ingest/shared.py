"""One mailbox's stored mail filed by every idle worker, beside its single-flight fetch.

After each stored batch the fetch job `offer`s the work: it enqueues one `file_stored`
job on its own RQ queue unless one is waiting there already (a Redis key, so a big
fetch never floods the queue: at most one waits per mailbox, and one more starts each
time a batch is stored while the last one runs). A filing job claims and files
chunks (batch.process_pending) and, while the mailbox's fetch holds its lease, waits
up to LINGER_SECONDS for the next batch before it ends. The fetch only reads and stores
meanwhile (fetching.fetch._file_share says why); at the end it `drain`s: it files what
is left and waits for the other claimants, so that a fetch that returns "ok" has filed
its mail.

The fetch shares only when a worker of its queue is idle or a filing job for the
mailbox runs (`can_share`, asked every CHECK_SECONDS): a single busy worker files as
before, each batch as it is stored, its parsing helper parsing the batch meanwhile.
Shared, that helper parses only the rows the fetch claims: parsing whole batches there
would parse the others' rows twice. A fetch run outside RQ (tests, the CLI) offers
nothing and files everything itself, and so does a fetch on SQLite. There the one write lock already serialises filing, and the
fetch's parsing helper (parse_ahead.py) gives parsing its own CPU: a second filing
process only contends for the lock. Measured with two rq workers and a slowed filing,
SQLite's busy handler let the filing job write nothing at all during a 3-second fetch:
the fetch retakes the lock the moment it commits. The claims work on SQLite all the same
(a fetch and a Reprocess, or a dead fetch and the next one, file each row once).
Turned on with MAILCHANNEL_SHARED_FILING=1, off by default: on the 2-CPU machine it was
built on, shared by other work, the two workers on one 5,000-message mailbox on
PostgreSQL filed slower than one worker alone (193 against 220 msgs/s, load 1.2 to 3.5;
bench --shared-filing): the fetch, both workers, their parsing helpers, Dovecot and
PostgreSQL all want the same two CPUs, sharing costs CPU (the filing job reads the
bodies back, parses in a helper of its own, polls), and replies to recent mail make
claimants wait for each other. It is meant for a machine with CPUs to spare.

A lost filing job costs nothing but time: the rows stay NEW, the fetch's drain or the
next fetch files them, and the sweep (services/fetching/schedule.py) requests a fetch
for NEW rows that nobody filed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from redis.exceptions import RedisError
from rq import Queue, Worker, get_current_job
from rq.worker import WorkerStatus
from sqlmodel import Session

from webapp.services.fetching import leases
from webapp.services.ingest import batch, claims
from webapp.services.ingest.parse_ahead import ParseAhead

log = logging.getLogger(__name__)

FILING_JOB = "worker.jobs.file_stored"
FILING_JOB_TIMEOUT = 1800
LINGER_SECONDS = 2.0  # a filing job waits this long for the fetch's next batch
LINGER_POLL_SECONDS = 0.2  # …looking this often: a poll is a claim, a commit and a lease read
_WAITING_KEY = "mailchannel:filing-waiting:{}:{}"  # queue, mailbox: a filing job is queued
_WAITING_TTL = 60  # seconds: a lost job's key goes by itself
_RUNNING_KEY = "mailchannel:filing-running:{}:{}"  # queue, mailbox: a filing job runs
CHECK_SECONDS = 2.0  # how often a fetch asks whether a worker could share its filing
_helpers: dict[str, tuple[float, bool]] = {}  # the fetch job's id -> (asked at, answer)


def enabled() -> bool:
    """Off unless MAILCHANNEL_SHARED_FILING=1: on a 2-CPU machine it did not pay (above)."""
    return os.environ.get("MAILCHANNEL_SHARED_FILING", "0") == "1"


def can_share(db: Session, mailbox_id: int) -> bool:
    """Whether other workers can share this fetch's filing: it is turned on, runs as an RQ
    job, on PostgreSQL, and a worker of its queue is idle or files for this mailbox
    already. (With no one to share with, the fetch files all it stores, its parsing
    helper parsing each batch while it is stored.) Asked of Redis every CHECK_SECONDS."""
    job = get_current_job()
    if not enabled() or job is None or db.get_bind().dialect.name != "postgresql":
        return False
    checked = _helpers.get(job.id)
    if checked is None or time.monotonic() - checked[0] > CHECK_SECONDS:
        try:
            checked = (time.monotonic(), _helpers_there(job, mailbox_id))
        except RedisError as exc:
            log.warning("mailbox %s: filing not shared (%s)", mailbox_id, exc)
            checked = (time.monotonic(), False)
        _helpers.clear()  # one fetch per work-horse
        _helpers[job.id] = checked
    return checked[1]


def _helpers_there(job, mailbox_id: int) -> bool:
    if job.connection.exists(_RUNNING_KEY.format(job.origin, mailbox_id)):
        return True
    workers = Worker.all(queue=Queue(job.origin, connection=job.connection))
    return any(worker.get_state() == WorkerStatus.IDLE for worker in workers)


def offer(db: Session, mailbox_id: int) -> bool:
    """Make the stored rows claimable by idle workers: a filing job on the fetch's queue,
    unless one is queued already. False when filing is not shared (can_share) or Redis
    refuses: the fetch then files on its own."""
    job = get_current_job()
    if job is None or not can_share(db, mailbox_id):
        return False
    try:
        key = _WAITING_KEY.format(job.origin, mailbox_id)
        if job.connection.set(key, "1", nx=True, ex=_WAITING_TTL):
            Queue(job.origin, connection=job.connection).enqueue(
                FILING_JOB,
                mailbox_id,
                job_timeout=FILING_JOB_TIMEOUT,
                result_ttl=60,
                failure_ttl=86400,
            )
    except RedisError as exc:
        log.warning(
            "mailbox %s: no filing job offered (%s); the fetch files alone", mailbox_id, exc
        )
        return False
    return True


def file_stored(db: Session, mailbox_id: int) -> dict[str, int]:
    """The filing job: claim and file the mailbox's stored rows while its fetch stores more."""
    job = get_current_job()
    running = None
    if job is not None:
        job.connection.delete(_WAITING_KEY.format(job.origin, mailbox_id))  # offer again
        running = _RUNNING_KEY.format(job.origin, mailbox_id)
    holder = claims.filing_holder(leases.new_holder())
    counts: dict[str, int] = {}
    idle_since = time.monotonic()
    with ParseAhead() as ahead:
        while True:
            if running is not None:  # the fetch shares while this job runs (can_share)
                job.connection.set(running, "1", ex=_WAITING_TTL)
            filed = batch.process_pending(db, mailbox_id, holder=holder, ahead=ahead)
            ahead.forget()
            _add(counts, filed)
            if filed:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > LINGER_SECONDS or not leases.held(db, mailbox_id):
                break
            else:
                db.commit()  # no snapshot held while waiting
                time.sleep(LINGER_POLL_SECONDS)
    if running is not None:
        job.connection.delete(running)
    return counts


def drain(
    db: Session,
    mailbox_id: int,
    holder: str,
    check: Callable[[], None],
    ahead: ParseAhead | None = None,
) -> dict[str, int]:
    """The end of a fetch: file what nobody holds, then wait for the other claimants (a row
    whose claimant died is taken over when its claim expires)."""
    counts = batch.process_pending(db, mailbox_id, check, holder=holder, ahead=ahead, fetch=True)
    deadline = time.monotonic() + 2 * leases.lease_ttl().total_seconds()
    while claims.unfiled(db, mailbox_id) and time.monotonic() < deadline:
        check()
        time.sleep(claims.POLL_SECONDS)
        more = batch.process_pending(db, mailbox_id, check, holder=holder, ahead=ahead, fetch=True)
        _add(counts, more)
    return counts


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    for state, count in more.items():
        counts[state] = counts.get(state, 0) + count
