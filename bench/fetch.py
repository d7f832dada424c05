"""Fetch benchmark: the whole pipeline against the raw IMAP + parse limit (`make bench`).

Fills a private Dovecot (the test fixture, IMAPS) with realistic mail, then measures
in the same run:

  raw limit   imapclient: login, SELECT, FETCH BODY.PEEK[] in the engine's batch size,
              email.message_from_bytes(policy=default) for each message, store nothing
  pipeline    real `rq worker` processes running worker.jobs.fetch_mailbox: first full
              fetch into cases, with one worker (one mailbox) and two workers (two
              mailboxes of half the messages each: one mailbox is never fetched twice
              at once), and two workers on ONE mailbox: one fetches, both file
              (bench/shared_filing.py)
  re-poll     a fetch of the unchanged mailbox (median of 5) and its FETCH count (0)
  memory      peak RSS (VmHWM from /proc) of each measured process: the raw client,
              (the parsing helper of webapp/services/ingest/parse_ahead.py shown apart),
              each rq worker and its work-horse; the first fetch at N/5 and at N
              messages shows whether memory stays flat as the mailbox grows

Usage: make bench [BENCH_ARGS="--quick | --messages N | --postgres | --profile | --no-preload"]
       make bench BENCH_ARGS="--postgres --shared-filing"  (one mailbox, 2 workers, alone)
       make bench BENCH_ARGS="--latency [--mailboxes N --latency-messages M --seconds S]"
         (push against polling: bench/latency.py)
       make bench BENCH_ARGS="--polling [--polling-mailboxes 200,500 --seconds S]"
         (many unchanged mailboxes on one worker, a tarpit among them: bench/polling.py)
       make bench BENCH_ARGS="--desk [--postgres] [--cases N --messages M --fetch-messages F]"
         (the pages of a 100,000-case desk during a big first fetch: bench/desk.py)
       .venv/bin/python -m bench.fetch --help
Figures: printed as a table and written to bench/results/latest.json (--json PATH);
--profile adds cProfile stats of a first fetch and of re-polls (bench/results/*.pstats).
The mail is delivered straight into the Maildir, named so that UID order is delivery order.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench import cpu, shared_filing

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RQ_BIN = Path(sys.executable).parent / "rq"
MB = 1_000_000
GOAL_RATIO = 0.5
GOAL_REPOLL_MS = 100.0
FLAT_RATIO = 1.25  # peak RSS at N messages vs N/5: "flat" when within 25 %


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# child processes (measured one by one with wait4)
# --------------------------------------------------------------------------


def child_raw(cfg: dict) -> None:
    """The raw limit: fetch BODY.PEEK[] in batches and parse with the email package."""
    import email
    import email.policy

    from imapclient import IMAPClient

    started = time.perf_counter()
    cpu_started = time.process_time()
    context = ssl.create_default_context(cafile=cfg["ca"])
    client = IMAPClient(cfg["host"], port=cfg["port"], ssl=True, ssl_context=context)
    client.login(cfg["user"], cfg["password"])
    client.select_folder("INBOX", readonly=True)
    uids = sorted(client.search(["UID", "1:*"]))
    count = size = 0
    batch = cfg["batch"]
    for start in range(0, len(uids), batch):
        chunk = uids[start : start + batch]
        for _uid, data in client.fetch(chunk, [b"BODY.PEEK[]"]).items():
            raw = data[b"BODY[]"]
            if cfg["parse"]:
                email.message_from_bytes(raw, policy=email.policy.default)
            count += 1
            size += len(raw)
    client.logout()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "messages": count,
                "bytes": size,
                "seconds": seconds,
                "cpu": time.process_time() - cpu_started,
                "vmhwm_mb": proc_mb(os.getpid(), "VmHWM"),
            }
        )
    )


def child_profile(cfg: dict) -> None:
    """fetch_mailbox in this process under cProfile (what an rq work-horse runs)."""
    from webapp import crypto
    from webapp.services.fetching import fetch as fetch_service

    crypto.configure([os.environ["ENCRYPTION_KEY"]])
    if cfg.get("warm_up"):  # re-polls: imports, engine and TLS context made once, as in a worker
        fetch_service.fetch_mailbox(cfg["database_url"], cfg["mailbox"], cfg["ca"])
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(cfg.get("repeat", 1)):
        result = fetch_service.fetch_mailbox(cfg["database_url"], cfg["mailbox"], cfg["ca"])
    profiler.disable()
    seconds = time.perf_counter() - started
    profiler.dump_stats(cfg["out"])
    print(json.dumps({"result": result, "seconds": seconds}))


CHILDREN = {"raw": child_raw, "profile": child_profile}


@dataclass
class Measured:
    returncode: int
    maxrss_mb: float  # ru_maxrss: includes the parent's RSS at spawn (see proc_mb)
    wall: float
    stdout: str
    stderr: str
    cpu: float = 0.0  # user + system seconds of the process and its reaped children


def proc_mb(pid: int, key: str = "VmHWM") -> float | None:
    """A memory figure of a live process from /proc/PID/status, in MB (MiB).

    VmHWM is the peak RSS of the process image: unlike ru_maxrss (which an exec'd child
    inherits from the parent's peak) it starts afresh at exec, and a forked child (the rq
    work-horse) starts from its parent's RSS at fork time.
    """
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return None


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process used so far, itself only."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The children of a process; none when it has just exited."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def run_measured(args: list[str], env: dict | None = None, timeout: float = 3600) -> Measured:
    """Run a process to its end; its peak RSS (and that of its reaped children) via wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
        try:
            status, usage = _wait4(proc.pid, timeout)
        except BaseException:
            _kill_tree(proc.pid)
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Measured(
            proc.returncode,
            usage.ru_maxrss / 1024,
            wall,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_utime + usage.ru_stime,
        )


def _wait4(pid: int, timeout: float) -> tuple[int, resource.struct_rusage]:
    deadline = time.monotonic() + timeout
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got == pid:
            return status, usage
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} still running after {timeout:.0f} s")
        time.sleep(0.005)


def _exits_within(pid: int, timeout: float) -> bool:
    """Wait for a child to exit without reaping it (waitid WNOWAIT)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.01)
    return False


def _kill_tree(pid: int) -> None:
    """SIGKILL a process we started and every descendant (rq's horse has its own session)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def self_child(mode: str, cfg: dict) -> list[str]:
    return [sys.executable, "-m", "bench.fetch", "--child", mode, json.dumps(cfg)]


# --------------------------------------------------------------------------
# fixtures: dovecot, redis, databases, mailboxes
# --------------------------------------------------------------------------


@dataclass
class Box:
    """A Dovecot user holding a known set of messages."""

    user: object
    messages: int = 0
    bytes: int = 0


@dataclass
class Env:
    dovecot: object
    redis: object
    ca_pem: str
    tmp: Path
    encryption_key: str
    batch: int
    rq_args: list = field(default_factory=list)  # extra `rq worker` options (the Procfile's)
    db_counter: int = 0
    queue_counter: int = 0
    cleanups: list = field(default_factory=list)

    def worker_env(self, database_url: str, queue: str) -> dict:
        return {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis.url,
            "ENCRYPTION_KEY": self.encryption_key,
            "MAIL_CA_BUNDLE": self.ca_pem,
            "RQ_QUEUE": queue,
            "INSTANCE_PATH": str(self.tmp / "instance"),
            "SECRET_KEY": "bench-secret-key",
            "PYTHONPATH": str(ROOT),
        }


def check_binaries() -> None:
    from tests.servers.dovecot import DOVECOT_BIN
    from tests.servers.redis import REDIS_BIN

    missing = [b for b in (DOVECOT_BIN, REDIS_BIN) if not Path(b).exists()]
    if missing:
        sys.exit(
            f"bench: {', '.join(missing)} missing. Install with ./scripts/test-deps.sh "
            "(or: apt-get install dovecot-imapd dovecot-pop3d redis-server)."
        )
    try:
        import pwd

        pwd.getpwnam("dovecot")
    except KeyError:
        sys.exit("bench: the system user 'dovecot' is missing (install dovecot-imapd).")
    if not RQ_BIN.exists():
        sys.exit(f"bench: {RQ_BIN} missing: run `make install` first.")


@contextlib.contextmanager
def fresh_database(env: Env, kind: str) -> Iterator[str]:
    """A new, migrated database: SQLite in the temp dir or a new PostgreSQL database."""
    from tests.helpers.databases import migrate

    env.db_counter += 1
    if kind == "sqlite":
        url = f"sqlite:///{env.tmp / f'bench-{env.db_counter}.db'}"
        migrate(url)
        try:
            yield url
        finally:
            from webapp.db import get_engine

            get_engine(url).dispose()
        return
    from tests.helpers.databases import fresh_database as pg_database

    with pg_database() as url:
        migrate(url)
        yield url


def make_mailbox(env: Env, database_url: str, box: Box) -> int:
    """A mailbox as the form makes it: its templates are the defaults (the Auto
    Acknowledgement is on; a first fetch's mail is all backlog, so none is sent)."""
    from tests.helpers.mailboxes import make_mailbox as make
    from webapp.db import new_session
    from webapp.services.mailboxes import default_template_ids

    with new_session(database_url) as db:
        templates = default_template_ids(db)
    return make(
        {"ENCRYPTION_KEY": env.encryption_key, "DATABASE_URL": database_url},
        env.dovecot,
        box.user,
        protocol="imaps",
        mark_as_read=False,
        delete_after_fetch=False,
        case_response_template_id=templates["case_response"],
        auto_ack_template_id=templates["auto_ack"],
    )


_delivered = 0


def deliver(dovecot, user, raw: bytes) -> None:
    """DovecotServer.deliver(), but with a Maildir name whose order is the delivery order.

    Dovecot gives new files their UIDs sorted by the seconds, then the microseconds field
    of the name, and compares the seconds as an int difference: the fixture's
    time.time_ns() in the seconds field overflows it once deliveries span more than
    ~2 s, and UIDs come out scrambled (replies before the mail they answer). Here:
    real seconds, then a counter in the microseconds field, as an MDA would write it.
    """
    global _delivered
    _delivered += 1
    box = dovecot.maildir(user.email)
    name = f"{int(time.time())}.M{_delivered}P{os.getpid()}.mailchannel-bench"
    tmp = box / "tmp" / name
    tmp.write_bytes(raw)
    os.chown(tmp, dovecot.uid, dovecot.gid)
    os.rename(tmp, box / "new" / name)


def fill(env: Env, total: int, seed: int) -> dict[str, Box]:
    """Deliver the generated mail: main (all), half_a + half_b (split), small (first fifth)."""
    from bench.messages import MailFactory

    boxes = {
        name: Box(env.dovecot.new_user(f"bench-{name}"))
        for name in ("main", "half_a", "half_b", "small")
    }
    half, small = total // 2, max(total // 5, 1)
    factory = MailFactory(seed)
    started = time.perf_counter()
    for i in range(total):
        raw = factory.next()
        targets = ["main", "half_a" if i < half else "half_b"]
        if i < small:
            targets.append("small")
        for name in targets:
            deliver(env.dovecot, boxes[name].user, raw)
        if (i + 1) % 1000 == 0:
            log(f"generated and delivered {i + 1}/{total}")
    log(f"mail generated and delivered in {time.perf_counter() - started:.1f} s")
    for box in boxes.values():
        box.messages, box.bytes = warm_up(env, box)
    return boxes


def warm_up(env: Env, box: Box) -> tuple[int, int]:
    """Let Dovecot index the new Maildir (new/ -> cur/, uidlist, sizes) before any timing."""
    from imapclient import IMAPClient

    context = ssl.create_default_context(cafile=env.ca_pem)
    client = IMAPClient("127.0.0.1", port=env.dovecot.imaps_port, ssl=True, ssl_context=context)
    try:
        client.login(box.user.email, box.user.password)
        client.select_folder("INBOX", readonly=True)
        sizes = client.fetch(client.search(["ALL"]), [b"RFC822.SIZE"])
        return len(sizes), sum(int(d[b"RFC822.SIZE"]) for d in sizes.values())
    finally:
        client.logout()


# --------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------


def rate(messages: int, size: int, seconds: float) -> dict:
    return {
        "messages": messages,
        "bytes": size,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(messages / seconds, 1) if seconds else None,
        "mb_per_s": round(size / MB / seconds, 2) if seconds else None,
    }


def measure_raw(env: Env, boxes: list[Box], parse: bool = True) -> dict:
    """The raw limit over one or more mailboxes at once (one connection / process each)."""
    started = time.perf_counter()
    meter = cpu.snapshot(env.dovecot.pid)
    procs = []
    for box in boxes:
        cfg = {
            "host": "127.0.0.1",
            "port": env.dovecot.imaps_port,
            "ca": env.ca_pem,
            "user": box.user.email,
            "password": box.user.password,
            "batch": env.batch,
            "parse": parse,
        }
        procs.append(_start_measured(self_child("raw", cfg)))
    outs = [_finish_measured(p) for p in procs]
    seconds = time.perf_counter() - started
    beside = cpu.used(meter, cpu.snapshot(env.dovecot.pid))
    for m in outs:
        if m.returncode != 0:
            raise RuntimeError(f"raw fetch failed:\n{m.stderr[-3000:]}")
    got = [json.loads(m.stdout.strip().splitlines()[-1]) for m in outs]
    messages = sum(g["messages"] for g in got)
    size = sum(g["bytes"] for g in got)
    expected = sum(b.messages for b in boxes)
    if messages != expected:
        raise RuntimeError(f"raw fetch read {messages} messages, expected {expected}")
    out = rate(messages, size, seconds if len(boxes) > 1 else got[0]["seconds"])
    out["peak_rss_mb"] = round(max(g["vmhwm_mb"] for g in got), 1)
    out["cpu_seconds"] = round(sum(g["cpu"] for g in got), 2)
    out["machine_cpu"] = beside
    return out


@dataclass
class _Running:
    proc: subprocess.Popen
    out: object
    err: object
    started: float


def _start_measured(args: list[str], env: dict | None = None, log_path: Path | None = None):
    out = open(log_path, "wb") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    err = subprocess.STDOUT if log_path else tempfile.TemporaryFile()
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,
    )
    return _Running(proc, out, err, time.perf_counter())


def _finish_measured(run: _Running, timeout: float = 3600) -> Measured:
    try:
        status, usage = _wait4(run.proc.pid, timeout)
    except BaseException:
        _kill_tree(run.proc.pid)
        raise
    run.proc.returncode = os.waitstatus_to_exitcode(status)
    texts = []
    for f in (run.out, run.err):
        if f is subprocess.STDOUT:
            texts.append("")
            continue
        if "r" in getattr(f, "mode", "rb+") or "+" in getattr(f, "mode", "rb+"):
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
        else:
            texts.append("")  # a log file: read it by its path
        f.close()
    return Measured(
        run.proc.returncode,
        usage.ru_maxrss / 1024,
        time.perf_counter() - run.started,
        texts[0],
        texts[1],
        usage.ru_utime + usage.ru_stime,
    )


class Workers:
    """Real `rq worker` processes on a private queue; each measured with wait4 when stopped."""

    def __init__(self, env: Env, database_url: str, count: int) -> None:
        from tests.servers.dovecot import tied_to_parent

        env.queue_counter += 1
        self.env = env
        self.queue_name = f"bench-{os.getpid()}-{env.queue_counter}"
        self.worker_env = env.worker_env(database_url, self.queue_name)
        self.runs: list[_Running] = []
        self.logs: list[Path] = []
        try:
            for i in range(count):
                log_path = env.tmp / f"{self.queue_name}-worker{i}.log"
                args = tied_to_parent(
                    [
                        str(RQ_BIN),
                        "worker",
                        "--url",
                        env.redis.url,
                        "--path",
                        str(ROOT),
                        "--name",
                        f"{self.queue_name}-w{i}",
                        *env.rq_args,
                        self.queue_name,
                    ]
                )
                self.runs.append(_start_measured(args, self.worker_env, log_path))
                self.logs.append(log_path)
            self._wait_registered(count)
            self.idle_rss_mb = [proc_mb(r.proc.pid, "VmRSS") or 0.0 for r in self.runs]
            self.idle_cpu = [proc_cpu(r.proc.pid) for r in self.runs]
            self.peaks = [0.0] * count
            self.helper_peaks = [0.0] * count  # the work-horse's parsing helper (parse_ahead)
            self.sample()
        except BaseException:
            self.kill()
            raise

    def _wait_registered(self, count: int, limit: float = 60) -> None:
        from rq import Worker

        from webapp.queue import get_queue

        queue = get_queue(self.env.redis.url, self.queue_name)
        deadline = time.monotonic() + limit
        while len(Worker.all(queue=queue)) < count:
            for r in self.runs:
                if r.proc.poll() is not None:
                    raise RuntimeError(f"rq worker exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rq workers did not register:\n{self.log_tail()}")
            time.sleep(0.05)

    def sample(self) -> None:
        """Peak RSS so far of each worker and of its work-horse (VmHWM only grows)."""
        for i, r in enumerate(self.runs):
            horses = child_pids(r.proc.pid)
            for pid in [r.proc.pid, *horses]:
                self.peaks[i] = max(self.peaks[i], proc_mb(pid) or 0.0)
            for pid in [helper for horse in horses for helper in child_pids(horse)]:
                self.helper_peaks[i] = max(self.helper_peaks[i], proc_mb(pid) or 0.0)

    def _dump_stacks(self, pid: int) -> None:
        """A worker that does not stop: its stacks, its horse's and their helpers' (SIGUSR1,
        worker/settings.py) into the worker logs, then print the process tree and the logs."""
        tree = [pid]
        for parent in tree:
            tree += child_pids(parent)
        for member in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGUSR1)
        time.sleep(2)
        for member in tree:
            with contextlib.suppress(OSError):
                log(f"pid {member}: " + Path(f"/proc/{member}/stat").read_text()[:120])
        for path in self.logs:
            with contextlib.suppress(OSError):
                log(f"{path}:\n" + path.read_text(errors="replace")[-20000:])

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs if p.exists())

    def run_jobs(self, mailbox_ids: list[int], limit: float = 3600) -> tuple[float, list[dict]]:
        """Enqueue one fetch job per mailbox; wall time until the last one ended, and results."""
        from rq.job import Job, JobStatus

        from webapp.queue import get_redis
        from webapp.services.fetching.schedule import enqueue_fetch

        conn = get_redis(self.env.redis.url)
        started = time.perf_counter()
        job_ids = [enqueue_fetch(m, self.env.redis.url, self.queue_name) for m in mailbox_ids]
        jobs = [Job.fetch(j, connection=conn) for j in job_ids]
        deadline = time.monotonic() + limit
        done: dict[str, object] = {}
        while len(done) < len(jobs):
            for job in jobs:
                if job.id in done:
                    continue
                status = job.get_status(refresh=True)
                if status in (
                    JobStatus.FINISHED,
                    JobStatus.FAILED,
                    JobStatus.STOPPED,
                    JobStatus.CANCELED,
                ):
                    done[job.id] = status
            if time.monotonic() > deadline:
                raise RuntimeError(f"fetch jobs still running after {limit} s")
            for r in self.runs:
                if r.proc.poll() is not None:
                    raise RuntimeError(f"an rq worker died:\n{self.log_tail()}")
            self.sample()
            # fine steps for short jobs (re-polls), then light polling: 2 CPUs are shared
            time.sleep(0.002 if time.perf_counter() - started < 1 else 0.02)
        seconds = time.perf_counter() - started
        results = []
        for job in jobs:
            if done[job.id] != JobStatus.FINISHED:
                job.refresh()
                raise RuntimeError(
                    f"fetch job {job.id} {done[job.id]}:\n"
                    f"{job.latest_result() and job.latest_result().exc_string}"
                )
            results.append(job.return_value())
        self.timings = [_job_timing(job) for job in jobs]
        return seconds, results

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()  # no-op after stop()

    def stop(self) -> tuple[list[float], list[float]]:
        """Warm shutdown (SIGTERM). Per worker: peak RSS of it and its work-horses (MB), and
        the CPU seconds they used after the worker was ready (the jobs: the horses are
        reaped by the worker, so wait4 counts them)."""
        self.sample()
        for r in self.runs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(r.proc.pid, signal.SIGTERM)
        cpus = []
        for r, idle in zip(self.runs, self.idle_cpu, strict=True):
            if not _exits_within(r.proc.pid, 60):
                self._dump_stacks(r.proc.pid)  # before _finish_measured kills it
            cpus.append(round(_finish_measured(r, timeout=5).cpu - idle, 2))
        self.runs = []
        self.helper_peak_mb = round(max(self.helper_peaks), 1)
        return [round(p, 1) for p in self.peaks], cpus

    def kill(self) -> None:
        for r in self.runs:
            _kill_tree(r.proc.pid)
            for f in (r.out, r.err):
                if f is not subprocess.STDOUT:
                    f.close()
        self.runs = []


def _job_timing(job) -> dict:
    """RQ's own timestamps: queued -> started (dequeue, fork, imports?) -> ended."""
    job.refresh()
    out = {}
    if job.enqueued_at and job.started_at:
        out["wait_ms"] = round((job.started_at - job.enqueued_at).total_seconds() * 1000, 1)
    if job.started_at and job.ended_at:
        out["run_ms"] = round((job.ended_at - job.started_at).total_seconds() * 1000, 1)
    return out


def db_counts(database_url: str, mailbox_ids: list[int]) -> dict:
    from sqlmodel import col, func, select

    from webapp.db import new_session
    from webapp.models import Case, FetchRun, Message, RawMessage

    with new_session(database_url) as db:
        states = dict(
            db.exec(
                select(RawMessage.state, func.count())
                .where(col(RawMessage.mailbox_id).in_(mailbox_ids))
                .group_by(RawMessage.state)
            ).all()
        )
        cases = db.exec(
            select(func.count()).select_from(Case).where(col(Case.mailbox_id).in_(mailbox_ids))
        ).one()
        messages = db.exec(
            select(func.count())
            .select_from(Message)
            .where(col(Message.mailbox_id).in_(mailbox_ids))
        ).one()
        runs = db.exec(
            select(FetchRun)
            .where(col(FetchRun.mailbox_id).in_(mailbox_ids))
            .order_by(col(FetchRun.id))
        ).all()
        run_seconds = [
            (r.finished_at - r.started_at).total_seconds() for r in runs if r.finished_at
        ]
        filing_jobs = db.exec(  # rows filed by filing jobs (bench/shared_filing.py)
            select(func.count())
            .select_from(RawMessage)
            .where(
                col(RawMessage.mailbox_id).in_(mailbox_ids),
                col(RawMessage.claimed_by).startswith("filing:"),
            )
        ).one()
        return {
            "filed_by_filing_jobs": filing_jobs,
            "raw_states": states,
            "cases": cases,
            "messages": messages,
            "runs": len(runs),
            "run_seconds": [round(s, 3) for s in run_seconds],
        }


def first_fetch(env: Env, db_kind: str, boxes: list[Box], workers: int, repolls: int = 0) -> dict:
    """First full fetch of the boxes by `workers` rq workers (one job per mailbox).

    With `repolls`, the unchanged mailbox is then fetched again that many times, as rq
    jobs (by a new worker, so the first fetch's CPU and memory figures stay its own)
    and as plain fetch_mailbox calls.
    """
    with fresh_database(env, db_kind) as url:
        ids = [make_mailbox(env, url, b) for b in boxes]
        with Workers(env, url, workers) as pool:
            meter = cpu.snapshot(env.dovecot.pid, _database_name(url))
            seconds, results = pool.run_jobs(ids)
            first_timings = pool.timings
            extra_runs = 0
            # A run stops itself after its time budget; the next job goes on (counted in).
            while any(
                r.get("state") == "ok" and _more_due(url, m)
                for r, m in zip(results, ids, strict=True)
            ):
                extra_runs += 1
                more, results = pool.run_jobs(ids)
                seconds += more
            for result in results:
                if result.get("state") != "ok":
                    raise RuntimeError(f"fetch failed: {result}\n{pool.log_tail()}")
            idle = pool.idle_rss_mb
            beside = cpu.used(meter, cpu.snapshot(env.dovecot.pid, _database_name(url)))
            peaks, cpus = pool.stop()
        counts = db_counts(url, ids)
        messages = sum(b.messages for b in boxes)
        size = sum(b.bytes for b in boxes)
        stored = sum(counts["raw_states"].values())
        if stored != messages:
            raise RuntimeError(f"stored {stored} raw messages, expected {messages}: {counts}")
        out = rate(messages, size, seconds)
        out.update(
            workers=workers,
            peak_rss_mb=max(peaks),
            peak_rss_per_worker_mb=peaks,
            peak_rss_helper_mb=pool.helper_peak_mb,
            cpu_seconds=round(sum(cpus), 2),
            cpu_seconds_per_worker=cpus,
            idle_worker_rss_mb=[round(x, 1) for x in idle],
            extra_runs=extra_runs,
            machine_cpu=beside,
            rq_timestamps=first_timings,
            db=counts,
        )
        if repolls:
            out["repoll_rq"] = repoll_rq(env, url, ids[0], repolls)
            out["repoll"] = repoll_in_process(env, url, ids[0], repolls)
        return out


def _database_name(url: str) -> str | None:
    """The PostgreSQL database of a URL (its backends are counted by bench/cpu.py)."""
    return urlsplit(url).path.lstrip("/") or None if url.startswith("postgresql") else None


def repoll_rq(env: Env, url: str, mailbox_id: int, repeat: int) -> dict:
    """The unchanged mailbox fetched again as rq jobs, one after the other."""
    times, commands, timings = [], [], []
    with Workers(env, url, 1) as pool:
        for _ in range(repeat):
            t, (res,) = pool.run_jobs([mailbox_id])
            times.append(t * 1000)
            commands.append(res["fetch_commands"])
            timings += pool.timings
            if res.get("state") != "ok" or res.get("new"):
                raise RuntimeError(f"re-poll did not come back clean: {res}")
        _peaks, cpus = pool.stop()
    return {
        "rq_job_ms": [round(t, 1) for t in times],
        "rq_job_median_ms": round(statistics.median(times), 1),
        "rq_fetch_commands": commands,
        "rq_timestamps": timings,
        "cpu_seconds_per_job": round(cpus[0] / repeat, 3),
    }


def _more_due(url: str, mailbox_id: int) -> bool:
    from webapp.db import new_session
    from webapp.models import Mailbox

    with new_session(url) as db:
        return not db.get(Mailbox, mailbox_id).initial_fetch_done


def repoll_in_process(env: Env, url: str, mailbox_id: int, repeat: int) -> dict:
    """fetch_mailbox of the unchanged mailbox, as the work-horse runs it (after one warm-up)."""
    from sqlmodel import col, select

    from webapp import crypto
    from webapp.db import new_session
    from webapp.models import FetchRun
    from webapp.services.fetching import fetch as fetch_service

    crypto.configure([env.encryption_key])
    fetch_service.fetch_mailbox(url, mailbox_id, env.ca_pem)  # imports, engine, TLS context
    times, results = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fetch_service.fetch_mailbox(url, mailbox_id, env.ca_pem)
        times.append((time.perf_counter() - started) * 1000)
        results.append(result)
    with new_session(url) as db:
        runs = db.exec(
            select(FetchRun)
            .where(FetchRun.mailbox_id == mailbox_id)
            .order_by(col(FetchRun.id).desc())
            .limit(repeat)
        ).all()
    logged = [r.fetch_commands for r in runs]
    if any(r["state"] != "ok" or r["new"] for r in results):
        raise RuntimeError(f"re-poll did not come back clean: {results}")
    return {
        "ms": [round(t, 1) for t in times],
        "median_ms": round(statistics.median(times), 1),
        "fetch_commands": [r["fetch_commands"] for r in results],
        "fetch_run_fetch_commands": logged,
        "no_fetch": all(c == 0 for c in [*logged, *(r["fetch_commands"] for r in results)]),
    }


def profile_fetch(env: Env, db_kind: str, box: Box, repolls: int = 20) -> dict:
    """cProfile of one first fetch, then of `repolls` re-polls of the unchanged mailbox
    (in a subprocess, as the work-horse runs it)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    with fresh_database(env, db_kind) as url:
        mailbox_id = make_mailbox(env, url, box)
        for kind, extra in (("first", {}), ("repoll", {"warm_up": True, "repeat": repolls})):
            path = RESULTS / f"profile-{db_kind}-{kind}.pstats"
            cfg = {
                "database_url": url,
                "mailbox": mailbox_id,
                "ca": env.ca_pem,
                "out": str(path),
                **extra,
            }
            m = run_measured(self_child("profile", cfg), env.worker_env(url, "unused"))
            if m.returncode != 0:
                raise RuntimeError(f"profiled fetch failed:\n{m.stderr[-3000:]}")
            got = json.loads(m.stdout.strip().splitlines()[-1])
            keys = PROFILE_KEYS if kind == "first" else REPOLL_KEYS
            out[kind] = {
                "pstats": str(path.relative_to(ROOT)),
                "seconds": round(got["seconds"], 3),
                "runs": extra.get("repeat", 1),
                "breakdown": profile_breakdown(path, got["seconds"], keys),
                "top": profile_top(path),
            }
    return out


# Functions whose cumulative time tells where a fetch goes (file suffix, function name).
PROFILE_KEYS = [
    ("webapp/services/fetching/fetch.py", "fetch_mailbox", "fetch_mailbox (everything)"),
    ("webapp/mail/sync.py", "_batch", "IMAP: FETCH RFC822.SIZE + BODY.PEEK[] (ImapFolder._batch)"),
    ("imapclient/imapclient.py", "fetch", "  IMAPClient.fetch (network + response parsing)"),
    ("imapclient/response_parser.py", "parse_fetch_response", "  imapclient parse_fetch_response"),
    ("webapp/services/fetching/store.py", "store_batch", "store: store_batch (raw rows + commit)"),
    ("webapp/services/fetching/store.py", "summary", "  store.summary (header peek)"),
    ("webapp/services/ingest/batch.py", "process_ids", "ingest: batch.process_ids"),
    (
        "webapp/services/ingest/batch.py",
        "_count_attempts",
        "  batch._count_attempts (UPDATE + commit)",
    ),
    ("webapp/mail/parse.py", "parse_message", "  parse.parse_message"),
    ("webapp/services/ingest/batch.py", "_file_one", "  batch._file_one (one message filed)"),
    ("webapp/services/ingest/route.py", "file_raw", "    route.file_raw"),
    ("webapp/services/ingest/batch.py", "commit", "  _Batch.commit (states + held-back writes)"),
    ("sqlalchemy/orm/session.py", "commit", "  all Session.commit"),
    ("<method 'commit' of 'sqlite3.Connection' objects>", "", "    sqlite3 COMMIT (fsync)"),
    ("sqlalchemy/orm/session.py", "flush", "  all Session.flush"),
    ("sqlalchemy/orm/session.py", "refresh", "  all Session.refresh"),
    ("sqlalchemy/orm/session.py", "get", "  all Session.get"),
    ("sqlalchemy/engine/base.py", "_execute_context", "  all SQL statements (execute)"),
]


# The same for a re-poll of an unchanged mailbox.
REPOLL_KEYS = [
    ("webapp/services/fetching/fetch.py", "fetch_mailbox", "fetch_mailbox (everything)"),
    ("webapp/services/fetching/leases.py", "acquire", "leases.acquire (+ commit)"),
    ("webapp/services/fetching/leases.py", "release", "leases.release (+ commit)"),
    ("webapp/services/fetching/leases.py", "__exit__", "LeaseKeeper.__exit__ (thread join)"),
    ("webapp/services/ingest/batch.py", "process_pending", "batch.process_pending (leftovers)"),
    ("webapp/services/fetching/run.py", "start_run", "fetch_run.start_run (+ commit)"),
    ("webapp/mail/connect.py", "open_imap", "open_imap (TCP + TLS + LOGIN)"),
    ("webapp/mail/connect.py", "tls_context", "  connect.tls_context (load CA bundle)"),
    ("ssl.py", "do_handshake", "  TLS handshake"),
    ("imapclient/imapclient.py", "login", "  IMAP LOGIN"),
    ("webapp/mail/sync.py", "_select", "ImapFolder._select (SELECT)"),
    ("webapp/services/fetching/store.py", "cursor_for", "store.cursor_for"),
    ("webapp/services/fetching/refetch.py", "refetch_imap", "refetch.refetch_imap"),
    (
        "webapp/services/fetching/after_fetch.py",
        "pending_server_actions",
        "after_fetch.pending_server_actions",
    ),
    ("webapp/services/fetching/store.py", "advance_to", "store.advance_to (+ commit)"),
    ("webapp/mail/sync.py", "close", "ImapFolder.close (LOGOUT)"),
    ("webapp/services/fetching/run.py", "finish", "fetch_run.finish (log row, mailbox, commits)"),
    ("sqlalchemy/orm/session.py", "commit", "all Session.commit"),
    ("<method 'commit' of 'sqlite3.Connection' objects>", "", "  sqlite3 COMMIT (fsync)"),
    ("sqlalchemy/engine/base.py", "_execute_context", "all SQL statements (execute)"),
]


def profile_breakdown(path: Path, total: float, keys: list | None = None) -> list[dict]:
    stats = pstats.Stats(str(path))
    rows = []
    for suffix, name, label in keys or PROFILE_KEYS:
        calls = cum = 0.0
        for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
            builtin = filename == "~" and func == suffix  # e.g. {method 'commit' of ...}
            if builtin or (func == name and filename.endswith(suffix)):
                calls += nc
                cum += ct
        if calls:
            rows.append(
                {
                    "what": label,
                    "calls": int(calls),
                    "seconds": round(cum, 2),
                    "percent": round(100 * cum / total, 1) if total else None,
                }
            )
    return rows


def profile_top(path: Path, limit: int = 25) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("tottime").print_stats(limit)
    return buf.getvalue()


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def table(report: dict) -> str:
    lines = []
    meta = report["meta"]
    lines.append(
        f"mailchannel fetch benchmark: {meta['messages']} messages, "
        f"{meta['bytes'] / MB:.1f} MB ({meta['protocol']}, batch {meta['batch']}, "
        f"{meta['cpus']} CPUs, MB = 10^6 bytes)"
    )
    lines.append(
        f"workers: {meta['rq_worker']}; "
        f"load average at start {meta['load_start']}, at end {meta.get('load_end')}; "
        "CPU s = the client's / the workers' (with their work-horses), not Dovecot's"
    )
    header = (
        f"{'':46} {'msgs/s':>9} {'MB/s':>8} {'seconds':>8} {'CPU s':>7} "
        f"{'peak RSS':>10} {'% of raw':>9}"
    )
    raw1 = report["raw_limit"]
    raw2 = report.get("raw_limit_2conn")
    lines += ["", header, "-" * len(header)]

    def row(label: str, r: dict, ref: dict | None = None) -> None:
        pct = f"{100 * r['msgs_per_s'] / ref['msgs_per_s']:.0f}%" if ref else ""
        lines.append(
            f"{label:46} {r['msgs_per_s']:>9.1f} {r['mb_per_s']:>8.2f} "
            f"{r['seconds']:>8.2f} {r.get('cpu_seconds', 0):>7.2f} "
            f"{r['peak_rss_mb']:>7.1f} MB {pct:>9}"
        )

    row("raw limit: imapclient + email, 1 connection", raw1)
    if "raw_fetch_only" in report:
        row("  (raw FETCH only, no parsing)", report["raw_fetch_only"])
    for db_kind, res in report["databases"].items():
        lines.append(f"[{db_kind}]")
        row("pipeline, 1 worker, first fetch", res["one_worker"], raw1)
        if raw2:
            row(f"raw limit, 2 connections (2 x {meta['messages'] // 2})", raw2)
        if "two_workers" in res:
            row(f"pipeline, 2 workers (2 x {meta['messages'] // 2})", res["two_workers"], raw2)
        shared_filing.rows(res, raw1, row)
        if "small" in res:
            row(f"pipeline, 1 worker, {res['small']['messages']} messages", res["small"], raw1)
        rp = res["one_worker"]["repoll"]
        rq_rp = res["one_worker"]["repoll_rq"]
        lines.append(
            f"  re-poll of the unchanged mailbox: fetch_mailbox median "
            f"{rp['median_ms']:.1f} ms ({', '.join(f'{t:.0f}' for t in rp['ms'])}); "
            f"FETCH commands {rp['fetch_commands']} "
            f"(fetch log {rp['fetch_run_fetch_commands']})"
        )
        runs = [t.get("run_ms") for t in rq_rp["rq_timestamps"] if t.get("run_ms")]
        lines.append(
            f"  re-poll as an rq job (enqueue -> finished): median "
            f"{rq_rp['rq_job_median_ms']:.1f} ms, of which the job ran "
            f"{statistics.median(runs) if runs else float('nan'):.1f} ms "
            f"(RQ timestamps); FETCH commands {rq_rp['rq_fetch_commands']}"
        )
        if "small" in res:
            small, big = res["small"], res["one_worker"]
            lines.append(
                f"  memory: peak RSS {small['peak_rss_mb']:.1f} MB at "
                f"{small['messages']} messages, {big['peak_rss_mb']:.1f} MB at "
                f"{big['messages']} messages (idle worker "
                f"{big['idle_worker_rss_mb'][0]:.1f} MB); its parsing helper "
                f"{small['peak_rss_helper_mb']:.1f} MB and "
                f"{big['peak_rss_helper_mb']:.1f} MB"
            )
        ow = res["one_worker"]
        raw_ms = 1000 * raw1["cpu_seconds"] / raw1["messages"]
        pipe_ms = 1000 * ow["cpu_seconds"] / ow["messages"]
        lines.append(
            f"  CPU per message: raw client {raw_ms:.2f} ms, pipeline {pipe_ms:.2f} ms "
            f"(the worker and its parsing helper, which run in parallel; the "
            f"database server's CPU is not counted)"
        )
        db = res["one_worker"]["db"]
        lines.append(
            f"  stored: {db['raw_states']}, {db['cases']} cases, {db['messages']} messages"
        )
    lines.append("")
    for goal in report["goals"]:
        lines.append(f"{'PASS' if goal['ok'] else 'FAIL'}  {goal['goal']}: {goal['value']}")
    if report.get("profile"):
        lines += ["", "profile of one first fetch (cProfile, cumulative seconds):"]
        for db_kind, profs in report["profile"].items():
            for kind, prof in profs.items():
                what = (
                    "one first fetch"
                    if kind == "first"
                    else f"{prof['runs']} re-polls of the unchanged mailbox"
                )
                lines.append(
                    f"[{db_kind}] {what}: {prof['seconds']} s under the profiler; {prof['pstats']}"
                )
                for r in prof["breakdown"]:
                    lines.append(
                        f"  {r['what']:62} {r['calls']:>8} calls "
                        f"{r['seconds']:>8.3f} s {r['percent']:>5.1f}%"
                    )
    return "\n".join(lines)


def goals(report: dict) -> list[dict]:
    out = shared_filing.goals(report)
    raw1 = report["raw_limit"]["msgs_per_s"]
    for db_kind, res in report["databases"].items():
        ratio = res["one_worker"]["msgs_per_s"] / raw1
        states = res["one_worker"]["db"]["raw_states"]
        out.append(
            {
                "goal": f"[{db_kind}] every message filed (a fast run that fails them "
                "proves nothing)",
                "ok": set(states) == {"done"},
                "value": str(states),
            }
        )
        out.append(
            {
                "goal": f"[{db_kind}] pipeline (1 worker) >= 50% of the raw limit",
                "ok": ratio >= GOAL_RATIO,
                "value": f"{100 * ratio:.0f}%",
            }
        )
        rp = res["one_worker"]["repoll"]
        out.append(
            {
                "goal": f"[{db_kind}] re-poll of the unchanged mailbox < 100 ms, no FETCH",
                "ok": rp["median_ms"] < GOAL_REPOLL_MS and rp["no_fetch"],
                "value": f"{rp['median_ms']:.1f} ms, FETCH commands {max(rp['fetch_commands'])}",
            }
        )
        if "small" in res:
            big, small = res["one_worker"], res["small"]
            growth = big["peak_rss_mb"] / small["peak_rss_mb"]
            helper = (
                big["peak_rss_helper_mb"] / small["peak_rss_helper_mb"]
                if small["peak_rss_helper_mb"]
                else 1.0
            )  # no helper (one CPU, or off)
            out.append(
                {
                    "goal": f"[{db_kind}] memory flat ({small['messages']} -> "
                    f"{big['messages']} messages, within 25%)",
                    "ok": max(growth, helper) <= FLAT_RATIO,
                    "value": f"x{growth:.2f} (its parsing helper x{helper:.2f})",
                }
            )
    return out


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.fetch", description=__doc__.split("\n")[0])
    p.add_argument(
        "--messages", type=int, help="messages in the mailbox (5000); --desk: seeded (500000)"
    )
    p.add_argument("--quick", action="store_true", help="500 messages: a smoke run")
    p.add_argument(
        "--postgres",
        action="store_true",
        help="also run the pipeline on PostgreSQL at 127.0.0.1:5432 (if it answers)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile one first fetch with cProfile (pstats in bench/results/)",
    )
    p.add_argument("--seed", type=int, default=5000, help="seed of the generated mail")
    p.add_argument(
        "--shared-filing",
        action="store_true",
        help="only the raw limit, 1 worker and 2 workers on ONE mailbox (bench/shared_filing.py)",
    )
    p.add_argument("--no-two-workers", action="store_true", help="skip the two-worker run")
    p.add_argument(
        "--no-preload",
        action="store_true",
        help="what-if: rq workers without the Procfile's -c worker.settings "
        "(each job's work-horse imports the app itself)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=RESULTS / "latest.json",
        help="where to write the figures (bench/results/latest.json)",
    )
    p.add_argument(
        "--latency",
        action="store_true",
        help="instead: delivery-to-case latency, push (IMAP IDLE) against polling (bench/latency.py)",
    )
    p.add_argument(
        "--polling",
        action="store_true",
        help="instead: many unchanged mailboxes on one worker, tarpit among them (bench/polling.py)",
    )
    p.add_argument(
        "--polling-mailboxes",
        default="200,500",
        help="--polling: mailbox counts, comma-separated (200,500)",
    )
    p.add_argument("--mailboxes", type=int, default=100, help="--latency: mailboxes (100)")
    p.add_argument(
        "--latency-messages", type=int, default=1000, help="--latency: messages per run (1000)"
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=120,
        help="--latency: delivery window; --polling: measured window (120)",
    )
    p.add_argument(
        "--desk",
        action="store_true",
        help="instead: the pages of a big desk during a big first fetch (bench/desk.py)",
    )
    p.add_argument("--cases", type=int, default=100_000, help="--desk: cases seeded (100000)")
    p.add_argument(
        "--fetch-messages", type=int, default=20_000, help="--desk: messages fetched (20000)"
    )
    p.add_argument("--child", nargs=2, metavar=("MODE", "JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.messages is None:
        args.messages = 500_000 if args.desk else 5000
    if args.quick:
        args.messages = 500
    if args.messages < 10:
        p.error("--messages must be at least 10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        CHILDREN[args.child[0]](json.loads(args.child[1]))
        return 0
    os.chdir(ROOT)
    check_binaries()
    if args.latency:
        from bench.latency import run

        return run(args.mailboxes, args.latency_messages, args.seconds)
    if args.polling:
        from bench.polling import run as run_polling

        counts = [int(n) for n in args.polling_mailboxes.split(",")]
        return run_polling(counts, args.seconds)
    db_kinds = ["sqlite"]
    if args.postgres:
        from tests.helpers.databases import postgres_answers

        if postgres_answers():
            db_kinds.append("postgresql")
        else:
            log("--postgres: nothing answers on 127.0.0.1:5432; SQLite only")

    # SIGTERM (make interrupted, CI) runs the finally blocks like Ctrl-C does.
    def terminated(*_: object) -> None:
        log("terminated: stopping workers, dovecot and redis")
        sys.exit(143)

    signal.signal(signal.SIGTERM, terminated)
    preload = [] if args.no_preload else ["-c", "worker.settings"]
    if args.desk:
        from bench.desk import run as run_desk

        return run_desk(db_kinds, args.cases, args.messages, args.fetch_messages)
    with servers([*preload, "-w", "worker.rqworker.MailWorker"]) as env:
        boxes = fill(env, args.messages, args.seed)
        main_box = boxes["main"]
        if args.shared_filing:
            only = shared_filing.run_only(env, db_kinds, main_box, measure_raw, first_fetch, log)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(only, indent=2, default=str) + "\n")
            print(shared_filing.text(only))
            return 0
        report: dict = {
            "meta": {
                "messages": main_box.messages,
                "bytes": main_box.bytes,
                "protocol": "imaps",
                "batch": env.batch,
                "seed": args.seed,
                "cpus": os.cpu_count(),
                "rq_worker": " ".join(["rq worker", *env.rq_args]),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "commit": _git_commit(),
                "load_start": [round(x, 2) for x in os.getloadavg()],
            },
            "databases": {},
        }

        log("raw limit (imapclient + email package)")
        raw_runs = [measure_raw(env, [main_box])]
        report["raw_fetch_only"] = measure_raw(env, [main_box], parse=False)
        for db_kind in db_kinds:
            res: dict = {}
            log(f"[{db_kind}] pipeline, 1 worker, {main_box.messages} messages")
            res["one_worker"] = first_fetch(env, db_kind, [main_box], 1, repolls=5)
            log(f"[{db_kind}] pipeline, 1 worker, {boxes['small'].messages} messages (memory)")
            res["small"] = first_fetch(env, db_kind, [boxes["small"]], 1)
            if not args.no_two_workers:
                log(f"[{db_kind}] pipeline, 2 workers, 2 x {boxes['half_a'].messages}")
                res["two_workers"] = first_fetch(
                    env, db_kind, [boxes["half_a"], boxes["half_b"]], 2
                )
                log(f"[{db_kind}] pipeline, 2 workers, ONE mailbox of {main_box.messages}")
                res[shared_filing.KEY] = shared_filing.measure(env, db_kind, main_box, first_fetch)
            report["databases"][db_kind] = res
        if not args.no_two_workers:
            log("raw limit, 2 connections")
            report["raw_limit_2conn"] = measure_raw(env, [boxes["half_a"], boxes["half_b"]])
        log("raw limit again (drift check)")
        raw_runs.append(measure_raw(env, [main_box]))
        # The limit is the better of the two runs: the pipeline is held to the harder mark.
        report["raw_limit"] = max(raw_runs, key=lambda r: r["msgs_per_s"])
        report["raw_limit_runs"] = raw_runs
        report["goals"] = goals(report)
        report["meta"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.profile:
            report["profile"] = {}
            for db_kind in db_kinds:
                log(f"[{db_kind}] profiling one first fetch")
                report["profile"][db_kind] = profile_fetch(env, db_kind, main_box)
        text = table(report)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(text)
        if args.profile:
            for db_kind, profs in report["profile"].items():
                for kind, prof in profs.items():
                    print(f"\n[{db_kind}] {kind}: top functions by own time:\n{prof['top']}")
        print(f"\nfigures: {args.json}")
        return 0


@contextlib.contextmanager
def servers(rq_args: list[str]) -> Iterator[Env]:
    """A private Dovecot (IMAPS, its own CA) and Redis in a temporary directory, for one run."""
    from cryptography.fernet import Fernet

    from tests.servers.dovecot import DovecotServer
    from tests.servers.redis import RedisServer
    from tests.servers.tls import make_test_ca
    from webapp.services.fetching.fetch import batch_size

    tmp = Path(tempfile.mkdtemp(prefix="mailchannel-bench-"))
    dovecot = redis = None
    try:
        ca = make_test_ca(tmp / "tls")
        log("starting dovecot and redis")
        dovecot = DovecotServer(cert_pem=ca.cert_pem, key_pem=ca.key_pem).start()
        redis = RedisServer().start()
        yield Env(
            dovecot=dovecot,
            redis=redis,
            ca_pem=str(ca.ca_pem),
            tmp=tmp,
            encryption_key=Fernet.generate_key().decode(),
            batch=batch_size(),
            rq_args=rq_args,
        )
    finally:
        if redis is not None:
            redis.stop()
        if dovecot is not None:
            dovecot.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=ROOT,
                text=True,
                capture_output=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
