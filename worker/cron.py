"""The scheduler's configuration, read by `rq cron worker/cron.py`."""

import os

from rq import cron

from worker.jobs import sweep

QUEUE = os.environ.get("RQ_QUEUE") or "mailchannel"

# Heal lost jobs: the database says what is due, Redis only rings the bell.
cron.register(sweep, queue_name=QUEUE, interval=30)
