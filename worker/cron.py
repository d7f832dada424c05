"""The scheduler's configuration, read by `rq cron worker/cron.py`."""

import os

from rq import cron

from webapp.services.fetching.schedule import SCHEDULE_TICK_SECONDS
from worker.jobs import dispatch_outbox, expire_held_messages, schedule_fetches, sweep

QUEUE = os.environ.get("RQ_QUEUE") or "mailchannel"

# Each mailbox fetches at its own interval (default 60 s): this tick enqueues the due ones,
# often enough that a poll starts within a few seconds of falling due (one cheap query a tick).
cron.register(schedule_fetches, queue_name=QUEUE, interval=SCHEDULE_TICK_SECONDS, job_timeout=60)
# Heal lost jobs: the database says what is due, Redis only rings the bell.
cron.register(sweep, queue_name=QUEUE, interval=30, job_timeout=120)
# Outgoing mail: retries that are due, sends lost by Redis, sends interrupted by a crash.
cron.register(dispatch_outbox, queue_name=QUEUE, interval=10, job_timeout=120)
# Held messages nobody confirmed in time become expired (still shown, still releasable).
cron.register(expire_held_messages, queue_name=QUEUE, interval=300, job_timeout=120)
