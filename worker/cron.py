"""The scheduler's configuration, read by `rq cron worker/cron.py`."""

import os

from rq import cron

from worker.jobs import schedule_fetches, sweep

QUEUE = os.environ.get("RQ_QUEUE") or "mailchannel"

# Each mailbox fetches at its own interval (default 60 s): this tick enqueues the due ones.
cron.register(schedule_fetches, queue_name=QUEUE, interval=15, job_timeout=120)
# Heal lost jobs: the database says what is due, Redis only rings the bell.
cron.register(sweep, queue_name=QUEUE, interval=30, job_timeout=120)
