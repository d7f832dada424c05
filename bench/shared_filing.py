"""Bench mode: ONE big mailbox's first fetch with two rq workers (issue 14, part 1).

The IMAP connection stays single-flight (one fetch job holds the lease); the second
worker files what the fetch stored (services/ingest/shared.py). Measured against the
raw+parse limit of the same run (one connection: imapclient + the email package).
Goal on PostgreSQL: 100 % or more. On SQLite the fetch files alone (one write lock):
its figure is shown for comparison, with no goal.
"""

from __future__ import annotations

GOAL_RATIO = 1.0
KEY = "two_workers_one_mailbox"


def measure(env, db_kind: str, box, first_fetch) -> dict:
    """The first fetch of `box` by two rq workers with shared filing turned on (the fetch
    job returns when all is filed)."""
    import os

    before = os.environ.get("MAILCHANNEL_SHARED_FILING")
    os.environ["MAILCHANNEL_SHARED_FILING"] = "1"  # the workers' environment is this one's
    try:
        return first_fetch(env, db_kind, [box], 2)
    finally:
        if before is None:
            del os.environ["MAILCHANNEL_SHARED_FILING"]
        else:
            os.environ["MAILCHANNEL_SHARED_FILING"] = before


def rows(res: dict, raw1: dict, row) -> None:
    """The table row of the measurement, if it was made."""
    if KEY in res:
        one = res[KEY]
        row("pipeline, 2 workers, ONE mailbox (shared filing)", one, raw1)


def goals(report: dict) -> list[dict]:
    out = []
    raw1 = report["raw_limit"]["msgs_per_s"]
    for db_kind, res in report["databases"].items():
        if KEY not in res or db_kind != "postgresql":
            continue
        one = res[KEY]
        ratio = one["msgs_per_s"] / raw1
        ceiling = ""
        if "machine_cpu" in one:
            ceiling = (
                f"; the CPUs here allow at most {100 * _most_per_second(one) / raw1:.0f}% "
                "at this CPU per message"
            )
        out.append(
            {
                "goal": f"[{db_kind}] one {one['messages']}-message mailbox, 2 workers "
                ">= 100% of the raw limit",
                "ok": ratio >= GOAL_RATIO,
                "value": f"{100 * ratio:.0f}% ({one['db'].get('filed_by_filing_jobs')} of "
                f"{one['messages']} filed by filing jobs{ceiling})",
            }
        )
    return out


def run_only(env, db_kinds: list[str], box, measure_raw, first_fetch, log) -> dict:
    """--shared-filing: just this measurement and what it is held to, in one run: the raw
    limit (better of two runs, before and after), one worker, two workers on ONE mailbox."""
    import os

    report: dict = {"load_start": [round(x, 2) for x in os.getloadavg()], "databases": {}}
    log("raw limit (imapclient + email package)")
    raw_runs = [measure_raw(env, [box])]
    for db_kind in db_kinds:
        log(f"[{db_kind}] pipeline, 1 worker, {box.messages} messages")
        one = first_fetch(env, db_kind, [box], 1)
        log(f"[{db_kind}] pipeline, 2 workers, ONE mailbox of {box.messages}")
        report["databases"][db_kind] = {
            "one_worker": one,
            KEY: measure(env, db_kind, box, first_fetch),
        }
    log("raw limit again (drift check)")
    raw_runs.append(measure_raw(env, [box]))
    report["raw_limit"] = max(raw_runs, key=lambda r: r["msgs_per_s"])
    report["raw_limit_runs"] = raw_runs
    report["load_end"] = [round(x, 2) for x in os.getloadavg()]
    report["goals"] = goals(report)
    return report


def text(report: dict) -> str:
    raw = report["raw_limit"]["msgs_per_s"]
    lines = [
        f"raw+parse limit, 1 connection: {raw:.1f} msgs/s (runs: "
        + ", ".join(f"{r['msgs_per_s']:.1f}" for r in report["raw_limit_runs"])
        + f"); load average at start {report['load_start']}, at end {report['load_end']}"
    ]
    for db_kind, res in report["databases"].items():
        for label, key in (("1 worker", "one_worker"), ("2 workers, ONE mailbox", KEY)):
            r = res[key]
            lines.append(
                f"[{db_kind}] {label:24} {r['msgs_per_s']:7.1f} msgs/s {r['seconds']:7.2f} s "
                f"CPU {r['cpu_seconds']:6.2f} s {100 * r['msgs_per_s'] / raw:4.0f}% of the limit; "
                f"{r['db']['filed_by_filing_jobs']} filed by filing jobs, {r['db']['raw_states']}"
            )
    lines.append(cpu_text(report))
    for goal in report["goals"]:
        lines.append(f"{'PASS' if goal['ok'] else 'FAIL'}  {goal['goal']}: {goal['value']}")
    return "\n".join(lines)


def _per_message(run: dict) -> dict[str, float]:
    """CPU ms per message of a run: its own processes (the workers and their helpers, or
    the raw limit's one process), the PostgreSQL backends and Dovecot it kept busy."""
    beside, n = run.get("machine_cpu", {}), run["messages"]
    out = {"own": 1000 * run["cpu_seconds"] / n}
    for name in ("postgresql", "dovecot"):
        if f"{name}_s" in beside:
            out[name] = 1000 * beside[f"{name}_s"] / n
    return out


def _most_per_second(run: dict) -> float:
    """What this machine's CPUs allow at the run's CPU cost per message."""
    import os

    return 1000 * (os.cpu_count() or 1) / sum(_per_message(run).values())


def cpu_text(report: dict) -> str:
    """Where the CPU went, and the most this machine's CPUs allow at that cost: a pipeline
    that leaves no CPU idle goes faster only by costing less per message."""
    import os

    cpus = os.cpu_count() or 1
    runs = [("raw+parse limit", report["raw_limit"])]
    for db_kind, res in report["databases"].items():
        runs += [(f"[{db_kind}] 1 worker", res["one_worker"]), (f"[{db_kind}] 2 workers", res[KEY])]
    lines = [f"CPU per message (ms) on {cpus} CPUs:"]
    for label, run in runs:
        if "machine_cpu" not in run:
            continue
        per = _per_message(run)
        beside = run["machine_cpu"]
        idle = beside["machine_idle_s"] / max(
            beside["machine_idle_s"] + beside["machine_busy_s"], 1e-9
        )
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in per.items())
        lines.append(
            f"  {label:26} {parts}; total {sum(per.values()):.2f} ms: at most "
            f"{_most_per_second(run):6.1f} "
            f"msgs/s here; machine idle {100 * idle:.0f} %"
        )
    return "\n".join(lines)
