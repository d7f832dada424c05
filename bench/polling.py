"""Polling benchmark (`make bench BENCH_ARGS=--polling`): many unchanged mailboxes on one worker.

N Dovecot mailboxes (IMAPS, the test fixture) polled every 60 s by the real processes:
one worker as the Procfile runs it and `rq cron worker/cron.py`, plus one mailbox pointed at
a tarpit on localhost (accepts, never answers). Their first due times are spread over one
interval, as mailboxes added over time would be. After a minute of warm-up, for S seconds:
the worker's CPU (itself and its reaped work horses, from /proc) per poll and per minute,
the scheduler's CPU per minute, and for every mailbox the longest gap between two polls
(the wait), against twice its interval. Then the same for the next mailbox count.

Usage: make bench BENCH_ARGS="--polling [--polling-mailboxes 200,500] [--seconds S]"
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.fetch import RQ_BIN, log
from bench.latency import _percentile, _start, _stop, process_env

INTERVAL = 60
WARM_UP = 60
# The Procfile's worker line, without --with-scheduler (nothing is scheduled with enqueue_at).
WORKER_ARGS = ["-c", "worker.settings", "-w", "worker.rqworker.MailWorker"]


def cpu_with_children(pid: int) -> float:
    """CPU seconds of a process and of the children it has reaped (RQ's work horses)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _runs(url: str, since) -> dict[int, list]:
    """Every fetch run started since `since`, per mailbox: (started, state) in order."""
    from sqlmodel import col, select

    from webapp.db import new_session
    from webapp.models import FetchRun

    out: dict[int, list] = {}
    with new_session(url) as db:
        rows = db.exec(
            select(FetchRun.mailbox_id, FetchRun.started_at, FetchRun.state)
            .where(col(FetchRun.started_at) >= since)
            .order_by(col(FetchRun.started_at))
        ).all()
    for mailbox_id, started, state in rows:
        out.setdefault(mailbox_id, []).append((started, state))
    return out


def _waits(runs: dict[int, list], ids: list[int], start, end) -> list[float]:
    """Per mailbox, the longest time without a poll starting, in the window [start, end]."""
    waits = []
    for mailbox_id in ids:
        polls = [s.replace(tzinfo=None) for s, _ in runs.get(mailbox_id, [])]
        moments = [start.replace(tzinfo=None), *polls, end.replace(tzinfo=None)]
        waits.append(
            max((b - a).total_seconds() for a, b in zip(moments, moments[1:], strict=False))
        )
    return waits


def measure(mailboxes: int, seconds: float, worker_args: list[str]) -> dict:
    from tests.helpers.databases import migrate
    from tests.helpers.mailboxes import make_mailbox
    from tests.servers.dovecot import DovecotServer
    from tests.servers.redis import RedisServer
    from tests.servers.tarpit import Tarpit
    from tests.servers.tls import make_test_ca
    from webapp.db import new_session, utcnow
    from webapp.models import Mailbox

    tmp = Path(tempfile.mkdtemp(prefix="mailchannel-polling-"))
    ca = make_test_ca(tmp / "tls")
    dovecot = DovecotServer(cert_pem=ca.cert_pem, key_pem=ca.key_pem).start()
    redis = RedisServer().start()
    tarpit = Tarpit().start()
    url = f"sqlite:///{tmp / 'polling.db'}"
    migrate(url)
    env = process_env(tmp, url, redis.url, str(ca.ca_pem), "polling")
    procs = []
    try:
        log(f"polling: {mailboxes} mailboxes + 1 tarpit, every {INTERVAL} s")
        now = utcnow()
        fields = {"fetch_interval_seconds": INTERVAL, "initial_fetch_done": True}
        ids = [
            make_mailbox(
                env,
                dovecot,
                dovecot.new_user("poll"),
                next_fetch_due_at=now + timedelta(seconds=random.uniform(0, INTERVAL)),
                **fields,
            )
            for _ in range(mailboxes)
        ]
        pit_user = dovecot.new_user("tarpit")
        pit = make_mailbox(env, dovecot, pit_user, next_fetch_due_at=now, **fields)
        with new_session(url) as db:
            db.get(Mailbox, pit).port = tarpit.port
            db.commit()
        worker_cmd = [str(RQ_BIN), "worker", "--url", redis.url, "--path", ".", *worker_args]
        worker = _start([*worker_cmd, "polling"], env, "worker", tmp)
        cron = [str(RQ_BIN), "cron", "--url", redis.url, "--path", ".", "worker/cron.py"]
        scheduler = _start(cron, env, "scheduler", tmp)
        procs += [worker, scheduler]
        time.sleep(WARM_UP)
        start, t0 = utcnow(), time.monotonic()
        cpu0 = cpu_with_children(worker.pid), cpu_with_children(scheduler.pid)
        time.sleep(seconds)
        cpu1 = cpu_with_children(worker.pid), cpu_with_children(scheduler.pid)
        elapsed, end = time.monotonic() - t0, utcnow()
        runs = _runs(url, start)
        polls = sum(len(v) for k, v in runs.items() if k != pit)
        waits = _waits(runs, ids, start, end)
        with new_session(url) as db:
            pit_box = db.get(Mailbox, pit)
            pit_state = {
                "runs": len(runs.get(pit, [])),
                "failures": pit_box.fetch_failures,
                "error": pit_box.last_fetch_error,
                "next_due": pit_box.next_fetch_due_at,
            }
        worker_cpu, scheduler_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        states = [s for k, v in runs.items() if k != pit for _, s in v]
        return {
            "mailboxes": mailboxes,
            "seconds": elapsed,
            "polls": polls,
            "not_ok": sum(1 for s in states if s not in ("ok", "running")),  # running: in flight
            "worker_ms_per_poll": 1000 * worker_cpu / max(polls, 1),
            "worker_cpu_per_min": 60 * worker_cpu / elapsed,
            "scheduler_cpu_per_min": 60 * scheduler_cpu / elapsed,
            "wait_max": max(waits),
            "wait_p99": _percentile(waits, 99),
            "wait_median": statistics.median(waits),
            "over_twice": sum(1 for w in waits if w > 2 * INTERVAL),
            "tarpit": pit_state,
            "tarpit_connections": tarpit.accepted,
            "load": os.getloadavg(),
        }
    finally:
        for proc in procs:
            _stop(proc)
        tarpit.stop()
        redis.stop()
        dovecot.stop()


def table(rows: list[dict]) -> str:
    lines = [
        f"\nunchanged mailboxes polled every {INTERVAL} s by one worker, plus one tarpit mailbox",
        "| mailboxes | polls | worker ms/poll | worker CPU s/min | scheduler CPU s/min "
        "| longest wait (max / p99 / median) | waits > 2 intervals | load avg |",
        "|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mailboxes']} | {r['polls']} | {r['worker_ms_per_poll']:.1f} "
            f"| {r['worker_cpu_per_min']:.2f} | {r['scheduler_cpu_per_min']:.2f} "
            f"| {r['wait_max']:.1f} / {r['wait_p99']:.1f} / {r['wait_median']:.1f} s "
            f"| {r['over_twice']} | {' '.join(f'{x:.2f}' for x in r['load'])} |"
        )
    for r in rows:
        t = r["tarpit"]
        lines.append(
            f"{r['mailboxes']}: tarpit mailbox: {t['runs']} run(s) in the window, "
            f"{t['failures']} failure(s) in a row, {r['tarpit_connections']} connection(s) "
            f"accepted; next try {t['next_due']}; error: {t['error']}; "
            f"polls not ok elsewhere: {r['not_ok']}"
        )
    return "\n".join(lines)


def run(counts: list[int], seconds: float, worker_args: list[str] | None = None) -> int:
    rows = []
    for count in counts:
        row = measure(count, seconds, worker_args or WORKER_ARGS)
        log(f"polling: {row}")
        rows.append(row)
    print(table(rows))
    return 0 if all(r["over_twice"] == 0 for r in rows) else 1
