"""`rq worker -c bench.rq_preload` (bench --rq-preload): import the app in the worker before it
forks, so a job's work-horse does not import webapp, SQLAlchemy and the models again.

A what-if for the production worker command (Procfile: stock `rq worker`), measured by the
benchmark; rq imports this settings module in the worker process at start.
"""

import worker.jobs  # noqa: F401
