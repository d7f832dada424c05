"""Browser tests: the real app under gunicorn, a real RQ worker, Debian's chromium.

Fixtures:
- live_stack: the running web server and worker (LiveServer: .url, .stop_worker(), .start_worker()).
- live_server: its base URL, e.g. http://127.0.0.1:PORT, with the worker running.
- nojs_page: a page in a context with JavaScript disabled.
- page_problems: collects console errors, uncaught exceptions and CSP violations of a page.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.helpers.databases import migrate
from tests.servers.dovecot import free_ports
from webapp.config import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT = 30.0  # seconds for gunicorn / the worker to come up (a bound, not a measurement)


def pytest_collection_modifyitems(config, items):
    if not Path(CHROMIUM).exists():
        skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches Debian's chromium: no browser can be downloaded here."""
    return {
        "headless": True,
        **browser_type_launch_args,  # --headed still wins
        "executable_path": CHROMIUM,
        "args": CHROMIUM_ARGS,
    }


def _bin(name: str) -> str:
    """A console script of the virtualenv running the tests."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{path} is missing: pip install -e '.[test]'")
    return str(path)


def _stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """Terminate a process we started, then anything left in its own process group."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    try:  # gunicorn workers / rq work-horses that outlived their parent (own session, own group)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LiveServer:
    """gunicorn serving create_app() plus a long-running `rq worker`, sharing one environment."""

    def __init__(self, tmp_path: Path, redis_url: str, ca_pem: str) -> None:
        self.root = tmp_path
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        database_url = f"sqlite:///{tmp_path / 'live.db'}"
        migrate(database_url)
        self.queue = f"browser-{uuid.uuid4().hex[:12]}"
        self.env = {
            **os.environ,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "browser-test-secret-key",
            "ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "MAIL_CA_BUNDLE": str(ca_pem),
            "EXTERNAL_URL": self.url,
            "RQ_QUEUE": self.queue,
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._worker_runs = 0

    # -- web -------------------------------------------------------------------------------
    def start_web(self) -> None:
        import gunicorn

        args = [
            _bin("gunicorn"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
            "--logger-class",
            "webapp.accesslog.RedactingLogger",
            "--graceful-timeout",
            "5",
        ]
        if gunicorn.version_info >= (25, 1):
            # else every instance shares $HOME/.gunicorn/gunicorn.ctl
            args.append("--no-control-socket")
        with open(self.root / "gunicorn.log", "wb") as log:  # the child keeps its own copy
            self.web = subprocess.Popen(
                [*args, "webapp:create_app()"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self.web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"gunicorn did not come up on {self.url}:\n{self.log('gunicorn')}"
                )
            time.sleep(0.1)

    # -- worker ----------------------------------------------------------------------------
    def start_worker(self) -> None:
        from rq import Worker

        from webapp.queue import get_redis

        self._worker_runs += 1
        name = f"{self.queue}-{self._worker_runs}"
        with open(self.root / "worker.log", "ab") as log:
            self.worker = subprocess.Popen(
                [
                    _bin("rq"),
                    "worker",
                    "--url",
                    self.env["REDIS_URL"],
                    "--path",
                    str(PROJECT_ROOT),
                    "-w",
                    "worker.rqworker.MailWorker",  # as the Procfile runs it
                    "--name",
                    name,
                    self.queue,
                ],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        connection = get_redis(self.env["REDIS_URL"])
        deadline = time.monotonic() + START_TIMEOUT
        while not any(w.name == name for w in Worker.all(connection=connection)):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rq worker did not register:\n{self.log('worker')}")
            time.sleep(0.1)

    def stop_worker(self) -> None:
        _stop(self.worker)
        self.worker = None

    def stop(self) -> None:
        self.stop_worker()
        _stop(self.web)
        self.web = None
        try:
            from webapp.queue import get_queue

            get_queue(self.env["REDIS_URL"], self.queue).empty()
        except Exception:  # the session redis may already be gone
            pass

    def log(self, which: str) -> str:
        path = self.root / f"{which}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def live_stack(tmp_path, redis_url, test_ca, request):
    """The app under gunicorn and a real `rq worker` on a fresh database and its own queue."""
    server = LiveServer(tmp_path / "live", redis_url, str(test_ca.ca_pem))
    try:
        server.start_web()
        server.start_worker()
        yield server
    finally:
        server.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            sys.stderr.write("\n--- gunicorn log ---\n" + server.log("gunicorn")[-6000:])
            sys.stderr.write("\n--- worker log ---\n" + server.log("worker")[-6000:] + "\n")


@pytest.fixture
def live_server(live_stack) -> str:
    """Base URL of the running app (worker running too)."""
    return live_stack.url


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def nojs_context(new_context):
    """A browser context with JavaScript disabled: the plain-HTML path of every page."""
    return new_context(java_script_enabled=False)


@pytest.fixture
def nojs_page(nojs_context):
    return nojs_context.new_page()


class PageProblems:
    """Console errors, uncaught exceptions and CSP violations seen on the watched pages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def watch(self, page):
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))
        return page

    def _console(self, msg) -> None:
        if msg.type in ("error", "warning") and (
            msg.type == "error" or "Content Security Policy" in msg.text
        ):
            self.messages.append(f"console.{msg.type}: {msg.text} ({msg.location.get('url', '')})")

    def csp_violations(self) -> list[str]:
        return [m for m in self.messages if "Content Security Policy" in m]

    def unexpected(self, allowed: tuple[str, ...] = ()) -> list[str]:
        return [m for m in self.messages if not any(a in m for a in allowed)]


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()
