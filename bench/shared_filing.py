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
    """The first fetch of `box` by two rq workers (the fetch job returns when all is filed)."""
    return first_fetch(env, db_kind, [box], 2)


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
        out.append(
            {
                "goal": f"[{db_kind}] one {one['messages']}-message mailbox, 2 workers "
                ">= 100% of the raw limit",
                "ok": ratio >= GOAL_RATIO,
                "value": f"{100 * ratio:.0f}% ({one['db'].get('filed_by_filing_jobs')} of "
                f"{one['messages']} filed by filing jobs)",
            }
        )
    return out
