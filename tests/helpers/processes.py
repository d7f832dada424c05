"""The Procfile's web and scheduler lines as real processes, for tests that run several of each."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from webapp.config import PROJECT_ROOT

BIN = Path(sys.executable).parent


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def web_process(env: dict, port: int) -> Iterator[str]:
    """`gunicorn … "webapp:create_app()"` as the Procfile's web line runs it; its base URL."""
    argv = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    argv += ["--logger-class", "webapp.accesslog.RedactingLogger", "webapp:create_app()"]
    base = f"http://127.0.0.1:{port}"
    with _running(argv, env) as process:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gunicorn on port {port} did not start")
            time.sleep(0.2)
        yield base


@contextlib.contextmanager
def _running(argv: list[str], env: dict) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        argv, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdin=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        _stop(process)


def rq_worker(env: dict):
    """A real `rq worker` process on the test's queue, as the Procfile's worker line runs it."""
    argv = [str(BIN / "rq"), "worker", "--url", env["REDIS_URL"], "--path", "."]
    argv += ["-c", "worker.settings", "-w", "worker.rqworker.MailWorker"]
    return _running([*argv, "--logging_level", "WARNING", env["RQ_QUEUE"]], env)


def scheduler_process(env: dict):
    """`rq cron worker/cron.py`, the Procfile's scheduler line."""
    argv = [str(BIN / "rq"), "cron", "--url", env["REDIS_URL"], "--path", "."]
    return _running([*argv, "--logging-level", "WARNING", "worker/cron.py"], env)
