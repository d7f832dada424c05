"""Desk benchmark (`make bench BENCH_ARGS="--desk [--postgres] [--cases N --desk-messages M]"`):
the pages people use on a 100,000-case desk, while a big first fetch runs.

Per database: N cases and M messages (100,000 and 500,000; a hundred cases hold 200
messages each) are seeded straight through the models' tables in bulk, with one admin and an
API token. The web runs as the Procfile runs it (gunicorn, 2 sync workers, not niced); two
real `rq worker -c worker.settings` processes (bench/fetch.py's Workers) fetch two Dovecot
mailboxes of small messages for the first time, and one client, signed in over HTTP, asks
for the pages in turn until the fetch ends: the case list (filters, sorts, the last page), a
search, a case of 200 messages, the mailbox page, GET /api/v1/cases. Each page's p50 and p95
come from every answer it got. The workers run at WORKER_NICE 10 and give way to the pages
(webapp/yielding.py); the same fetch is then run again (other mail) with WORKER_YIELD=0, for
the web p95 and the fetch's rate with and without the workers waiting for the pages.
"""

from __future__ import annotations

import contextlib
import functools
import http.cookiejar
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from bench.fetch import ROOT, Box, Env, Workers, deliver, fresh_database, log, make_mailbox, warm_up

BIG_CASES, BIG_MESSAGES = 100, 200  # the cases with 200 messages
PASSWORD = "bench-password-1234"
ADMIN = "admin@desk.example"
CHUNK = 10_000


def _words(seed: int = 7, count: int = 3000) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "sto", "vel", "dra", "pun", "ix", "or", "te", "ba"]
    words = {"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(count * 2)}
    return sorted(words)[:count]


WORDS = _words()
_WEIGHTS = [1 / (rank + 1) for rank in range(len(WORDS))]  # Zipf: a few words are everywhere


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, cum_weights=_cumulative(), k=words))


@functools.cache
def _cumulative() -> list[float]:
    total, out = 0.0, []
    for w in _WEIGHTS:
        total += w
        out.append(total)
    return out


def seed(url: str, cases: int, messages: int, mailbox_id: int) -> dict:
    """The cases, their contacts and messages, inserted in bulk; returns ids for the pages."""
    from sqlalchemy import insert, text, update

    from webapp.db import get_engine, new_session, utcnow
    from webapp.models import Case, Contact, Counter, Message
    from webapp.services.access import users

    rng = random.Random(1)
    with new_session(url) as db:
        admin = users.create_first_admin(db, ADMIN, PASSWORD)
        agents = [users.create_user(db, f"agent{i}@desk.example", PASSWORD).id for i in range(4)]
        admin_id = admin.id
        _, token = users.create_token(db, "bench")
    engine = get_engine(url)
    postgres = engine.dialect.name == "postgresql"
    start = utcnow() - timedelta(days=365)
    contacts = max(cases // 5, 1)
    big = min(BIG_CASES, max(0, (messages - cases) // BIG_MESSAGES))
    per_case = [1] * cases
    for n in range(big):
        per_case[n * (cases // max(big, 1))] = BIG_MESSAGES
    extra = messages - sum(per_case)
    for _ in range(max(0, extra)):
        per_case[rng.randrange(cases)] += 1
    started = time.perf_counter()
    with engine.begin() as conn:
        search_indexes: list[str] = []
        if postgres:  # built once after the rows, as the migrations define them: faster
            for name, definition in conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                    "'message_search' AND indexname LIKE 'ix_message_search%'"
                )
            ).all():
                search_indexes.append(definition)
                conn.execute(text(f'DROP INDEX "{name}"'))
        conn.execute(
            insert(Contact.__table__),
            [
                {"email": f"customer{i}@example.net", "email_key": f"customer{i}@example.net",
                 "name": f"Customer {i}", "created_at": start, "updated_at": start}
                for i in range(contacts)
            ],
        )  # fmt: skip
        for low in range(0, cases, CHUNK):
            conn.execute(insert(Case.__table__), [
                {"number": n + 1, "subject": _text(rng, 5).capitalize(),
                 "status": ("open", "open", "pending", "closed")[n % 4],
                 "contact_id": n % contacts + 1, "requester_email": f"customer{n % contacts}@example.net",
                 "mailbox_id": mailbox_id, "assignee_id": None if n % 3 else rng.choice([admin_id, *agents]),
                 "created_at": start + timedelta(seconds=300 * n), "updated_at": start + timedelta(seconds=300 * n)}
                for n in range(low, min(cases, low + CHUNK))
            ])  # fmt: skip
        conn.execute(update(Counter.__table__).where(Counter.name == "case").values(value=cases))
        if conn.execute(text("SELECT count(*) FROM counter WHERE name = 'case'")).scalar() == 0:
            conn.execute(insert(Counter.__table__).values(name="case", value=cases))
        if postgres:  # new cases are numbered from the sequence (migration 0020)
            conn.execute(text("SELECT setval('case_number_seq', :n)"), {"n": cases})
        rows: list[dict] = []
        for n, count in enumerate(per_case):
            for k in range(count):
                when = start + timedelta(seconds=300 * n + k)
                body = _text(rng, rng.randint(20, 80))
                rows.append(
                    {"case_id": n + 1, "mailbox_id": mailbox_id, "contact_id": n % contacts + 1,
                     "direction": "in", "opened_case": k == 0,
                     "from_address": f"customer{n % contacts}@example.net",
                     "from_name": f"Customer {n % contacts}", "to_addresses": "support@acme.example",
                     "cc_addresses": "", "subject": f"Case {n + 1} message {k}", "text": body,
                     "full_text": body, "message_id": f"<seed{n}.{k}@example.net>",
                     "in_reply_to": "", "references_ids": "", "backlog": False, "parse_notes": "",
                     "received_at": when, "created_at": when}
                )  # fmt: skip
                if len(rows) == CHUNK:
                    conn.execute(insert(Message.__table__), rows)
                    rows = []
        if rows:
            conn.execute(insert(Message.__table__), rows)
    inserted = time.perf_counter() - started
    if postgres:
        with engine.begin() as conn:  # message_search was filled by its trigger meanwhile
            for definition in search_indexes:
                conn.execute(text(definition))
        # What autovacuum does on a desk that has grown for months: statistics, and the
        # visibility map that lets count(*) read an index alone.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    big_case = per_case.index(BIG_MESSAGES) + 1 if big else 1
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "insert_seconds": round(inserted, 1),
        "cases": cases,
        "messages": sum(per_case),
        "big_case": big_case,
        "agent": agents[0],
        "token": token,
        "pages": -(-cases // 50),
        "sender": f"customer{(big_case - 1) % contacts}@example.net",
    }


# --------------------------------------------------------------------------
# the web as the Procfile runs it, and a signed-in client
# --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(env: dict, tmp: Path):
    """`web:` of the Procfile: gunicorn, 2 sync workers; yields its base URL."""
    port = _free_port()
    argv = [
        str(Path(sys.executable).parent / "gunicorn"), "--no-control-socket",
        "--bind", f"127.0.0.1:{port}", "--workers", "2",
        "--logger-class", "webapp.accesslog.RedactingLogger", "webapp:create_app()",
    ]  # fmt: skip
    out = open(tmp / f"gunicorn-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, cwd=ROOT, env={**env, "PORT": str(port)}, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/auth/login", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp / f"gunicorn-{port}.log").read_text()[-3000:]) from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()


class Client:
    """A browser-like client: signs in through the form, then times GETs."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        page = self.opener.open(base + "/auth/login").read().decode()
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"csrf_token": csrf, "email": ADMIN, "password": PASSWORD})
        self.opener.open(base + "/auth/login", data=form.encode()).read()

    def get(self, path: str) -> float:
        """Milliseconds until the whole answer was read."""
        request = urllib.request.Request(self.base + path)
        if path.startswith("/api/"):
            request.add_header("Authorization", f"Bearer {self.token}")
        started = time.perf_counter()
        with self.opener.open(request, timeout=60) as resp:
            body = resp.read()
            if resp.status != 200 or "/auth/login" in resp.geturl() or not body:
                raise RuntimeError(f"{path}: {resp.status} {resp.geturl()}")
        return (time.perf_counter() - started) * 1000


def pages(seeded: dict, mailbox_id: int, search_word: str) -> dict[str, str]:
    last = seeded["pages"]
    return {
        "case list": "/cases/",
        "case list, open": "/cases/?status=open",
        "case list, an agent's": f"/cases/?assignee={seeded['agent']}",
        "case list, a mailbox's": f"/cases/?mailbox={mailbox_id}",
        "case list, by subject": "/cases/?sort=subject",
        "case list, by contact, desc": "/cases/?sort=contact&dir=desc",
        "case list, by last message": "/cases/?sort=last&dir=desc",
        "case list, last page": f"/cases/?page={last}",
        "case list, middle page": f"/cases/?page={last // 2}",
        "case list, open, last page": f"/cases/?status=open&page={last // 2}",
        "search, a word": f"/cases/?q={search_word}",
        "search, a sender": f"/cases/?q={seeded['sender']}",
        "search, two words, open": f"/cases/?q={search_word}+{WORDS[40]}&status=open",
        "case of 200 messages": f"/cases/{seeded['big_case']}",
        "mailbox page": f"/mailboxes/{mailbox_id}",
        "/api/v1/cases": "/api/v1/cases",
        "/api/v1/cases, last page": f"/api/v1/cases?page={last}",
        "/api/v1/cases, after (keyset)": f"/api/v1/cases?after={seeded['cases'] - 100}",
    }


def measure(client: Client, paths: dict[str, str], running, min_rounds: int = 3) -> dict:
    """Every page in turn, round after round, while running() (at least min_rounds)."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    load = [os.getloadavg()[0]]
    rounds = 0
    while running() or rounds < min_rounds:
        for name, path in paths.items():
            times[name].append(client.get(path))
        rounds += 1
        load.append(os.getloadavg()[0])
    return {
        "rounds": rounds,
        "load": round(statistics.mean(load), 2),
        "pages": {name: _stats(t) for name, t in times.items()},
    }


def _stats(values: list[float]) -> dict:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 1)

    return {"n": len(values), "p50": at(0.5), "p95": at(0.95), "max": round(ordered[-1], 1)}


# --------------------------------------------------------------------------
# a big first fetch, and the pages meanwhile
# --------------------------------------------------------------------------


def fill_small(env: Env, name: str, count: int, seed: int) -> list[Box]:
    """Two Dovecot mailboxes of count/2 small text messages each (other mail per seed)."""
    from tests.helpers.messages import email

    rng = random.Random(seed)
    boxes = [Box(env.dovecot.new_user(f"desk-{name}{i}")) for i in range(2)]
    for n in range(count):
        who = rng.randrange(5000)
        raw = email(
            _text(rng, 5).capitalize(),
            sender=f"Sender {who} <sender{who}@mail{seed}.example>",
            body=_text(rng, rng.randint(20, 80)) + "\n",
            message_id=f"<desk{seed}.{n}@mail.example>",
        )
        deliver(env.dovecot, boxes[n % 2].user, raw)
    for box in boxes:
        box.messages, box.bytes = warm_up(env, box)
    return boxes


def _not_filed(url: str, mailbox_ids: list[int]) -> int:
    from sqlmodel import col, func, select

    from webapp.db import new_session
    from webapp.models import RawMessage

    with new_session(url) as db:
        query = select(func.count()).where(
            col(RawMessage.mailbox_id).in_(mailbox_ids),
            col(RawMessage.state).in_(["new", "failed"]),
        )
        return int(db.exec(query).one())


def fetch_while_measuring(
    env: Env, url: str, boxes: list[Box], client, paths, give_way: bool = True
) -> dict:
    """Two rq workers at WORKER_NICE 10, giving way to the pages or not (WORKER_YIELD), fetch
    the boxes for the first time; the pages are measured until the last job ends."""
    from bench.fetch import _more_due

    os.environ["WORKER_NICE"] = "10"  # the workers' environment is os.environ and more
    os.environ["WORKER_YIELD"] = "1" if give_way else "0"
    ids = [make_mailbox(env, url, box) for box in boxes]
    outcome: dict = {"seconds": 0.0}
    with Workers(env, url, 2) as pool:

        def fetch() -> None:
            try:
                seconds, _ = pool.run_jobs(ids)
                while any(_more_due(url, m) for m in ids):  # a run that used up its time
                    more, _ = pool.run_jobs(ids)
                    seconds += more
                outcome["seconds"] = seconds
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                outcome["error"] = error

        thread = threading.Thread(target=fetch, daemon=True)
        thread.start()
        time.sleep(1)  # the jobs started: login, SELECT, the first batch
        result = measure(client, paths, thread.is_alive, min_rounds=1)
        thread.join()
        pool.stop()
    if "error" in outcome:
        raise RuntimeError(f"the fetch failed: {outcome['error']}")
    messages = sum(box.messages for box in boxes)
    failed = _not_filed(url, ids)
    if failed:  # the pages were measured beside a fetch that did not do its work
        raise RuntimeError(f"the fetch left {failed} of {messages} messages not filed")
    result.update(
        give_way=give_way,
        messages=messages,
        fetch_seconds=round(outcome["seconds"], 1),
        msgs_per_s=round(messages / outcome["seconds"], 1),
    )
    return result


def run_database(env: Env, kind: str, cases: int, messages: int, mail: dict) -> dict:
    log(f"[{kind}] seeding {cases} cases and {messages} messages")
    with fresh_database(env, kind) as url:
        seeded_box = make_mailbox(env, url, Box(env.dovecot.new_user(f"desk-seeded-{kind}")))
        seeded = seed(url, cases, messages, seeded_box)
        log(f"[{kind}] seeded in {seeded['seconds']} s")
        web_env = {
            **env.worker_env(url, "desk-unused"),
            "WEB_CONCURRENCY": "2",
            "WORKER_YIELD": "1",
        }
        with gunicorn(web_env, env.tmp) as base:
            client = Client(base, seeded["token"])
            paths = pages(seeded, seeded_box, WORDS[300])
            log(f"[{kind}] pages, quiet")
            quiet = measure(client, paths, lambda: False, min_rounds=5)
            log(f"[{kind}] pages during a first fetch, workers giving way to the pages")
            giving = fetch_while_measuring(env, url, mail["giving_way"], client, paths)
            log(f"[{kind}] pages during a first fetch, workers not giving way (WORKER_YIELD=0)")
            other = mail["not_giving_way"]
            not_giving = fetch_while_measuring(env, url, other, client, paths, give_way=False)
    return {
        "seed": seeded | {"token": None},
        "quiet": quiet,
        "giving_way": giving,
        "not_giving_way": not_giving,
    }


def table(kind: str, report: dict) -> str:
    runs = [
        ("quiet", report["quiet"]),
        ("giving way", report["giving_way"]),
        ("not", report["not_giving_way"]),
    ]
    s = report["seed"]
    lines = [
        f"\n[{kind}] {s['cases']:,} cases, {s['messages']:,} messages seeded in {s['seconds']} s "
        f"(rows {s['insert_seconds']} s); a first fetch of {report['giving_way']['messages']:,} small "
        f"messages by 2 rq workers at nice 10: {report['giving_way']['msgs_per_s']} msg/s giving way "
        f"to the pages, {report['not_giving_way']['msgs_per_s']} msg/s not (WORKER_YIELD=0)",
        "| page (ms) | " + " | ".join(f"{label} p50 | {label} p95" for label, _ in runs) + " |",
        "|---|" + "---:|" * (2 * len(runs)),
    ]
    for name in report["quiet"]["pages"]:
        cells = [f"{r['pages'][name]['p50']} | {r['pages'][name]['p95']}" for _, r in runs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    every = [[t for p in r["pages"].values() for t in [p["p95"]]] for _, r in runs]
    lines.append("| worst page p95 | " + " | ".join(f" | {max(e)}" for e in every) + " |")
    lines.append(
        "rounds (each page once): "
        + ", ".join(f"{label} {r['rounds']} (load {r['load']})" for label, r in runs)
    )
    return "\n".join(lines)


def run(kinds: list[str], cases: int, messages: int, fetch_messages: int) -> int:
    """The desk benchmark on each database kind; prints the tables."""
    import json

    from bench.fetch import RESULTS, servers

    with servers(["-c", "worker.settings", "-w", "worker.rqworker.MailWorker"]) as env:
        log(f"delivering 2 x {fetch_messages} small messages")
        mail = {
            "giving_way": fill_small(env, "giving", fetch_messages, 1),
            "not_giving_way": fill_small(env, "notgiving", fetch_messages, 2),
        }
        reports = {kind: run_database(env, kind, cases, messages, mail) for kind in kinds}
        meta = {"cpus": os.cpu_count(), "load_end": os.getloadavg()}
        (RESULTS / "desk.json").parent.mkdir(parents=True, exist_ok=True)
        (RESULTS / "desk.json").write_text(json.dumps({"meta": meta, **reports}, indent=2) + "\n")
        for kind, report in reports.items():
            print(table(kind, report))
        print(f"\nfigures: {RESULTS / 'desk.json'}")
        return 0
