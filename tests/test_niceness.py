"""Background work yields the CPU to people: the worker and the watcher run at WORKER_NICE."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rq import Queue

from tests.helpers.processes import rq_worker
from tests.helpers.watch import wait_for, watcher_process
from webapp.config import load_settings
from webapp.queue import get_queue


def niceness(pid: int) -> int:
    """The nice value of a running process, as `ps -o ni` shows it (/proc/PID/stat field 19)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_the_worker_and_the_jobs_it_runs_are_niced(app_env, monkeypatch):
    monkeypatch.setenv("WORKER_NICE", "7")
    mine = os.nice(0)
    with rq_worker(app_env) as process:
        assert wait_for(lambda: niceness(process.pid) == mine + 7, what="the worker niced")
        queue: Queue = get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"])
        job = queue.enqueue("os.nice", 0)  # a work horse answers its own niceness
        wait_for(lambda: job.get_status(refresh=True) == "finished", what="the job run")
        assert job.return_value() == mine + 7


def test_the_watcher_is_niced_by_default(app_env):
    mine = os.nice(0)
    process = watcher_process(app_env)
    try:
        assert wait_for(lambda: niceness(process.pid) == mine + 10, what="the watcher niced")
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_niceness_out_of_range_stops_the_start_naming_the_setting(tmp_path):
    with pytest.raises(ValueError, match="WORKER_NICE"):
        load_settings({"INSTANCE_PATH": str(tmp_path), "WORKER_NICE": "25"})
