"""Every message of the shared corpus is ingested, or kept as failed with a reason; no run crashes."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.databases import COVERED, fresh_database, migrate, postgres_answers
from tests.helpers.mailboxes import fetch, make_mailbox
from tests.helpers.rows import counts, raws, runs
from webapp.config import PROJECT_ROOT

CORPUS = PROJECT_ROOT.parent / "shared" / "corpus"
NOT_MESSAGES = ("LICENSE", "LICENCE", "COPYING", "README", "MANIFEST", "NOTE")


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(
        path
        for path in CORPUS.rglob("*")
        if path.is_file()
        and "replies" not in path.relative_to(CORPUS).parts
        and not any(word in path.name.upper() for word in NOT_MESSAGES)
    )


@pytest.fixture
def corpus_env(request, app_env, monkeypatch):
    """app_env on SQLite, or on a fresh PostgreSQL database (NUL bytes, column lengths)."""
    if request.param == "SQLite":
        yield app_env
        COVERED.add("SQLite")
        return
    with fresh_database() as url:
        migrate(url)
        monkeypatch.setenv("DATABASE_URL", url)
        yield {**app_env, "DATABASE_URL": url}
    COVERED.add("PostgreSQL")


_PG = pytest.param(
    "PostgreSQL",
    marks=[
        pytest.mark.postgres,
        pytest.mark.skipif(
            not postgres_answers(), reason="no PostgreSQL answers on 127.0.0.1:5432"
        ),
    ],
)


@pytest.mark.skipif(not corpus_files(), reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize(
    "protocol, corpus_env",
    [("imaps", "SQLite"), ("pop3s", "SQLite"), ("imaps", _PG)],
    indirect=["corpus_env"],
)
def test_every_corpus_message_is_ingested_or_failed_with_a_reason(
    corpus_env, dovecot, mail_user, protocol, monkeypatch
):
    app_env = corpus_env
    monkeypatch.setenv("MAILCHANNEL_FETCH_BATCH_SIZE", "50")
    files = corpus_files()
    for path in files:
        mail_user.deliver(path.read_bytes())
    box = make_mailbox(app_env, dovecot, mail_user, protocol=protocol)
    result = fetch(app_env, box)
    assert result["state"] == "ok", runs(app_env, box)[-1].error
    rows = raws(app_env, box)
    # identical files are one message (same bytes, same mailbox)
    distinct = len({hashlib.sha256(_as_served(p.read_bytes())).hexdigest() for p in files})
    assert len(rows) == distinct
    states = Counter(r.state for r in rows)
    assert set(states) <= {"done", "failed", "ignored"}, states
    assert all(r.error for r in rows if r.state != "done")
    got = counts(app_env, box)
    assert got["messages"] == states["done"]
    assert got["message_raw_ids"] == states["done"]
    print(
        f"\ncorpus over {protocol}: {len(files)} files, {distinct} distinct messages, "
        f"{states['done']} ingested, {states['failed']} failed, {states['ignored']} ignored"
    )
    for row in rows:
        if row.state != "done":
            print(f"  {row.state}: {row.header_subject[:50]!r}: {row.error}")
    assert fetch(app_env, box)["new"] == 0  # and a second run adds nothing


def _as_served(raw: bytes) -> bytes:
    """Dovecot serves LF files with CRLF: the LF and CRLF copies of a message are one message."""
    return raw.replace(b"\r\n", b"\n")
