"""Settings module for `rq worker -c worker.settings`.

RQ forks a work horse per job (MailWorker runs polls in its own process instead:
worker/rqworker.py); importing the app here, once, in the parent means each job starts with
everything loaded instead of importing it again (0.6 s of CPU per job).
"""

import faulthandler
import signal

import worker.jobs  # noqa: F401  preload: models, services, mail layer

# `kill -USR1 <pid>` prints every thread's stack to the worker's log: where is it stuck?
faulthandler.register(signal.SIGUSR1, all_threads=True)
