"""Latency benchmark (`make bench BENCH_ARGS=--latency`): delivery to case, push against polling.

N Dovecot mailboxes (IMAPS, the test fixture), real processes as the Procfile runs them:
two `rq worker -c worker.settings -w worker.rqworker.MailWorker`, `rq cron worker/cron.py` and, in the push run,
`python -m worker.watch`. M messages are delivered into random mailboxes at random moments
over S seconds; the time from delivery (the Maildir rename) to the case row existing (what
`GET /api/v1/cases` reads, sampled every 50 ms) gives p50/p95/p99. Then the same with push
off: the watcher stopped, every mailbox polled every minute. The watcher's RSS and CPU are
read from /proc: before any mailbox is watched, idle with all N watched, and under load.

Usage: make bench BENCH_ARGS="--latency [--mailboxes N] [--latency-messages M] [--seconds S]"
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.fetch import ROOT, RQ_BIN, log, proc_cpu, proc_mb


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _start(argv: list[str], env: dict, name: str, tmp: Path) -> subprocess.Popen:
    out = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
    )


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _listening(url: str) -> int:
    from sqlalchemy import func
    from sqlmodel import col, select

    from webapp.db import new_session
    from webapp.models import WatchLease

    with new_session(url) as db:
        query = select(func.count()).where(col(WatchLease.watching_since).is_not(None))
        return int(db.exec(query).one())


def process_env(tmp: Path, url: str, redis_url: str, ca_pem: str, queue: str) -> dict:
    """The environment of the bench's worker, scheduler and watcher processes."""
    from cryptography.fernet import Fernet

    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "MAIL_CA_BUNDLE": ca_pem,
        "RQ_QUEUE": queue,
        "INSTANCE_PATH": str(tmp / "instance"),
        "SECRET_KEY": "bench-secret-key",
        "PYTHONPATH": str(ROOT),
    }


def _cpu_percent(pid: int, seconds: float) -> float:
    before = proc_cpu(pid)
    time.sleep(seconds)
    return 100 * (proc_cpu(pid) - before) / seconds


class Probe:
    """Delivers messages at random moments and watches for their cases."""

    def __init__(self, url: str, users: list, count: int, seconds: float, tag: str) -> None:
        # Imported here, in the main thread: the two threads must not import at the same time.
        from sqlmodel import col, select

        from tests.helpers.messages import email
        from webapp.db import new_session
        from webapp.models import Case

        self.email, self.new_session, self.case, self.select, self.col = (
            email,
            new_session,
            Case,
            select,
            col,
        )
        self.url, self.users, self.count, self.seconds, self.tag = url, users, count, seconds, tag
        self.delivered: dict[str, float] = {}
        self.seen: dict[str, float] = {}

    def deliver_all(self) -> None:
        email = self.email
        moments = sorted(random.uniform(0, self.seconds) for _ in range(self.count))
        start = time.monotonic()
        for n, at in enumerate(moments):
            time.sleep(max(0.0, start + at - time.monotonic()))
            user = random.choice(self.users)
            subject = f"{self.tag} probe {n}"
            user.deliver(email(subject, to=user.email, sender=f"Probe {n} <probe{n}@example.org>"))
            self.delivered[subject] = time.monotonic()

    def watch(self, deadline: float) -> None:
        new_session, select, col, Case = self.new_session, self.select, self.col, self.case
        prefix = f"{self.tag} probe "
        while time.monotonic() < deadline and len(self.seen) < self.count:
            try:
                with new_session(self.url) as db:
                    query = select(Case.subject).where(col(Case.subject).startswith(prefix))
                    subjects = db.exec(query).all()
            except Exception as exc:  # noqa: BLE001 - a busy database: look again
                log(f"latency: reading cases failed ({type(exc).__name__}); again")
                subjects = []
            now = time.monotonic()
            for subject in subjects:
                self.seen.setdefault(subject, now)
            time.sleep(0.05)

    def latencies(self) -> list[float]:
        return [self.seen[s] - t for s, t in self.delivered.items() if s in self.seen]


def _run_probe(url: str, users: list, count: int, seconds: float, tag: str, drain: float) -> Probe:
    probe = Probe(url, users, count, seconds, tag)
    deadline = time.monotonic() + seconds + drain

    def watch() -> None:
        try:
            probe.watch(deadline)
        except BaseException as exc:
            log(f"latency: the probe stopped: {exc!r}")
            raise

    watcher = threading.Thread(target=watch)
    watcher.start()
    probe.deliver_all()
    watcher.join()
    return probe


def _row(name: str, probe: Probe) -> dict:
    values = probe.latencies()
    if not values:
        return {"run": name, "cases": 0, "of": probe.count}
    return {
        "run": name,
        "cases": len(values),
        "of": probe.count,
        "p50": _percentile(values, 50),
        "p95": _percentile(values, 95),
        "p99": _percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def _watch(url: str, watcher: subprocess.Popen, ids: list[int]) -> float:
    """Enable these mailboxes, wait until the watcher listens to all of them; its RSS (MB)."""
    from webapp.db import new_session
    from webapp.models import Mailbox

    with new_session(url) as db:
        for mailbox_id in ids:
            db.get(Mailbox, mailbox_id).enabled = True
        db.commit()
    deadline = time.monotonic() + 120
    while _listening(url) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    log(f"latency: {_listening(url)} of {len(ids)} mailboxes listening")
    time.sleep(5)  # the fetches every (re)connect asks for
    return proc_mb(watcher.pid, "VmRSS") or 0.0


def run(mailboxes: int, messages: int, seconds: float) -> int:
    from tests.helpers.databases import migrate
    from tests.helpers.mailboxes import make_mailbox
    from tests.servers.dovecot import DovecotServer
    from tests.servers.redis import RedisServer
    from tests.servers.tls import make_test_ca
    from webapp.db import utcnow

    tmp = Path(tempfile.mkdtemp(prefix="mailchannel-latency-"))
    ca = make_test_ca(tmp / "tls")
    dovecot = DovecotServer(cert_pem=ca.cert_pem, key_pem=ca.key_pem).start()
    redis = RedisServer().start()
    url = f"sqlite:///{tmp / 'latency.db'}"
    migrate(url)
    env = process_env(tmp, url, redis.url, str(ca.ca_pem), "latency")
    procs: list[subprocess.Popen] = []
    watcher = None
    try:
        log(f"latency: {mailboxes} mailboxes, {messages} messages over {seconds:.0f} s per run")
        users = [dovecot.new_user("latency") for _ in range(mailboxes)]
        ids = [
            make_mailbox(
                env,
                dovecot,
                user,
                enabled=False,
                initial_fetch_done=True,
                last_fetch_at=utcnow(),
                next_fetch_due_at=utcnow(),
            )
            for user in users
        ]
        worker = [str(RQ_BIN), "worker", "--url", redis.url, "--path", ".", "-c", "worker.settings"]
        worker += ["-w", "worker.rqworker.MailWorker"]
        for n in range(2):
            procs.append(_start([*worker, "latency"], env, f"worker{n}", tmp))
        cron = [str(RQ_BIN), "cron", "--url", redis.url, "--path", ".", "worker/cron.py"]
        procs.append(_start(cron, env, "scheduler", tmp))
        watcher = _start([sys.executable, "-m", "worker.watch"], env, "watcher", tmp)
        time.sleep(5)
        rss_empty = proc_mb(watcher.pid, "VmRSS") or 0.0
        # Half first, then all: the second half's growth is the cost of one more mailbox,
        # without what the first connection loads once (TLS, imapclient, the database pool).
        half = mailboxes // 2
        rss_half = _watch(url, watcher, ids[:half])
        rss_idle = _watch(url, watcher, ids)
        cpu_idle = _cpu_percent(watcher.pid, 10)
        cpu_before = proc_cpu(watcher.pid)
        started = time.monotonic()
        push = _run_probe(url, users, messages, seconds, "push", drain=30)
        cpu_load = 100 * (proc_cpu(watcher.pid) - cpu_before) / (time.monotonic() - started)
        rss_load = proc_mb(watcher.pid, "VmHWM") or 0.0
        _stop(watcher)  # push off: its leases go, every mailbox is polled every minute
        watcher = None
        log("latency: push off, polling every minute")
        poll = _run_probe(url, users, messages, seconds, "poll", drain=90)
        report = {
            "rows": [_row("push (IMAP IDLE)", push), _row("polling every 1 min", poll)],
            "watcher": {
                "rss_empty_mb": rss_empty,
                "rss_idle_mb": rss_idle,
                "rss_peak_mb": rss_load,
                "rss_half_mb": rss_half,
                "kb_per_mailbox": (rss_idle - rss_empty) * 1024 / max(mailboxes, 1),
                "kb_per_more_mailbox": (rss_idle - rss_half) * 1024 / max(mailboxes - half, 1),
                "cpu_idle_percent": cpu_idle,
                "cpu_load_percent": cpu_load,
            },
        }
        print(table(report, mailboxes, messages, seconds))
        return 0
    finally:
        _stop(watcher)
        for proc in procs:
            _stop(proc)
        redis.stop()
        dovecot.stop()


def table(report: dict, mailboxes: int, messages: int, seconds: float) -> str:
    lines = [
        f"\n{mailboxes} mailboxes, {messages} messages at random moments over {seconds:.0f} s",
        "| delivery → case | cases | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        if not row["cases"]:
            lines.append(f"| {row['run']} | 0 of {row['of']} | | | | |")
            continue
        lines.append(
            f"| {row['run']} | {row['cases']} of {row['of']} | {row['p50']:.2f} s "
            f"| {row['p95']:.2f} s | {row['p99']:.2f} s | {row['max']:.2f} s |"
        )
    w = report["watcher"]
    lines += [
        "",
        f"watcher RSS: {w['rss_empty_mb']:.1f} MB watching nothing, {w['rss_idle_mb']:.1f} MB "
        f"watching {mailboxes} ({w['kb_per_mailbox']:.0f} KB per mailbox with the first "
        f"connection's one-time cost), {w['rss_half_mb']:.1f} MB watching {mailboxes // 2}: "
        f"{w['kb_per_more_mailbox']:.0f} KB per mailbox added; peak {w['rss_peak_mb']:.1f} MB",
        f"watcher CPU: {w['cpu_idle_percent']:.2f} % of a core idle, "
        f"{w['cpu_load_percent']:.2f} % under load",
    ]
    return "\n".join(lines)
