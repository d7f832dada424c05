"""Settings module for `rq worker -c worker.settings`.

RQ forks a work horse per job (MailWorker runs polls in its own process instead:
worker/rqworker.py); importing the app here, once, in the parent means each job starts with
everything loaded instead of importing it again (0.6 s of CPU per job).
"""

import faulthandler
import os
import signal

import worker.jobs  # noqa: F401  preload: models, services, mail layer
from webapp import yielding
from webapp.config import load_settings

# Background work yields the CPU to people: the worker, its work horses and their parsing
# helper run at a lower priority (WORKER_NICE), so the web pages stay quick during a big fetch,
# and between two messages they wait while the web on this host answers pages (WORKER_YIELD).
_settings = load_settings()
os.nice(_settings.worker_nice)
yielding.configure_worker(_settings.redis_url, _settings.worker_yield)

# `kill -USR1 <pid>` prints every thread's stack to the worker's log: where is it stuck?
faulthandler.register(signal.SIGUSR1, all_threads=True)
