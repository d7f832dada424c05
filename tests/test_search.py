"""The case list's search box (and the API's q): subject, sender and message text, on both
databases, kept up to date as mail is filed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from sqlalchemy import update
from sqlmodel import select

from tests.helpers.databases import (
    ON_BOTH,
    downgrade,
    fresh_database,
    migrate,
    postgres_answers,
)
from tests.helpers.mailboxes import fetch, make_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import bulk_cases
from tests.helpers.web import api_token
from webapp.db import new_session
from webapp.models import Message
from webapp.services import case_lists, case_queries

COBOL = "Compiler crash on Tuesday"
PRINTER = "Printer jammed"


@pytest.fixture
def filed(app_env, dovecot, mail_user) -> None:
    """Two emails filed through a real fetch of the test Dovecot."""
    box = make_mailbox(app_env, dovecot, mail_user, initial_fetch_done=True)
    body = "Hello,\nthe COBOL compiler stopped with error 0xC0FFEE at midnight.\n"
    mail_user.deliver(
        email(COBOL, sender="Grace Hopper <grace@navy.example>", to=mail_user.email, body=body)
    )
    mail_user.deliver(email(PRINTER, sender="Ada Lovelace <ada@example.org>", to=mail_user.email))
    assert fetch(app_env, box)["state"] == "ok"


def _listed(client, q: str, **args) -> str:
    resp = client.get("/cases/", query_string={"q": q, **args})
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


@ON_BOTH
@pytest.mark.parametrize(
    ("q", "found", "left_out"),
    [
        ("cobol", COBOL, PRINTER),  # a word of its text
        ("grace@navy.example", COBOL, PRINTER),  # its sender's address
        ("Hopper", COBOL, PRINTER),  # its sender's name
        ("printer", PRINTER, COBOL),  # a word of its subject
    ],
    ids=["text", "address", "name", "subject"],
)
def test_a_filed_message_is_found_by_its_text_sender_or_subject(admin, filed, q, found, left_out):
    page = _listed(admin, q)
    assert found in page
    assert left_out not in page


@ON_BOTH
def test_every_word_typed_must_match(admin, filed):
    assert COBOL in _listed(admin, "compiler midnight")
    assert COBOL not in _listed(admin, "compiler printer")


QUERIES = [
    '"unclosed quote',
    "cobol AND",
    "NEAR(cobol",
    "*",
    "col:umn",
    "- ^ ~",
    "'; DROP TABLE message; --",
    '"cobol" OR (midnight',
    "0xC0FFEE!",
    "\\",
]


@ON_BOTH
@pytest.mark.parametrize("q", QUERIES)
def test_punctuation_quotes_and_operators_typed_do_not_fail(admin, filed, q):
    page = _listed(admin, q)
    assert "case" in page  # a page (a count or "No cases match"), not an error


@ON_BOTH
def test_a_search_without_a_match_says_so(admin, filed):
    page = _listed(admin, "zebra")
    assert "No cases match “zebra”" in page
    assert COBOL not in page


def test_the_search_stays_in_the_box_and_in_the_sort_and_filter_links(admin, filed):
    page = _listed(admin, "cobol", status="open")
    assert 'name="q" value="cobol"' in page
    assert "/cases/?q=cobol&amp;status=open&amp;sort=subject" in page  # a column header
    assert "/cases/?q=cobol&amp;status=pending" in page  # a status pill


def test_the_search_combines_with_the_filters(admin, filed):
    assert COBOL in _listed(admin, "cobol", status="open")
    assert "No cases match “cobol” with these filters" in _listed(admin, "cobol", status="closed")


@ON_BOTH
def test_the_api_lists_the_cases_matching_q(admin, filed):
    token = api_token(admin)
    headers = {"Authorization": f"Bearer {token}"}
    items = admin.get("/api/v1/cases?q=cobol", headers=headers).get_json()["items"]
    assert [item["subject"] for item in items] == [COBOL]


def _search(url: str, q: str) -> list[str]:
    with new_session(url) as db:
        page = case_queries.list_cases(db, q=q)
        return [row.case.subject for row in page.rows]


def test_an_edited_or_deleted_message_is_searched_as_it_is_now(any_db):
    bulk_cases(any_db, 20)
    with new_session(any_db) as db:
        db.exec(update(Message).where(Message.case_id == 7).values(text="a walrus in the lobby"))
        db.commit()
    assert _search(any_db, "walrus") == ["Bulk case 7"]
    with new_session(any_db) as db:
        db.delete(db.exec(select(Message).where(Message.case_id == 7)).one())
        db.commit()
    assert _search(any_db, "walrus") == []


def _walrus_in_cases_7_and_9_twice_each(url: str) -> None:
    bulk_cases(url, 20)  # case 7 open, case 9 closed: "open" if n % 3 else "closed"
    with new_session(url) as db:
        for case_id in (7, 9):
            first = db.exec(select(Message).where(Message.case_id == case_id)).one()
            db.add(Message(case_id=case_id, subject="Again", text="a walrus again"))
            first.text = "a walrus in the lobby"
            db.add(first)
        db.commit()


def test_a_search_counts_each_matching_case_once(any_db):
    _walrus_in_cases_7_and_9_twice_each(any_db)
    with new_session(any_db) as db:
        assert case_queries.list_cases(db, q="walrus").total == 2


def test_a_search_count_keeps_the_other_filters(any_db):
    _walrus_in_cases_7_and_9_twice_each(any_db)
    filters = case_queries.CaseFilters(status="closed")
    with new_session(any_db) as db:
        assert case_queries.list_cases(db, filters=filters, q="walrus").total == 1


def test_the_api_counts_each_matching_case_once(any_db):
    _walrus_in_cases_7_and_9_twice_each(any_db)
    with new_session(any_db) as db:
        assert case_lists.api_cases(db, q="walrus")[1] == 2


@contextlib.contextmanager
def _sqlite(tmp_path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'm.db'}"


@pytest.mark.parametrize("kind", ["SQLite", pytest.param("PostgreSQL", marks=pytest.mark.postgres)])
def test_the_migration_indexes_the_messages_already_there(kind, tmp_path):
    if kind == "PostgreSQL" and not postgres_answers():
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432")
    with fresh_database() if kind == "PostgreSQL" else _sqlite(tmp_path) as url:
        migrate(url)
        downgrade(url, "0021_search")
        downgrade(url, "-1")  # before this migration
        bulk_cases(url, 20)
        migrate(url)
        assert _search(url, "Bulk case 12") == ["Bulk case 12"]


def test_a_query_without_words_matches_nothing():
    assert case_lists.fts5_query("*** ( ) \" '") == ""


def test_a_word_in_more_messages_than_a_search_reads_finds_the_newest(any_db, monkeypatch):
    bulk_cases(any_db, 30)
    monkeypatch.setattr(case_lists, "SEARCHED_MESSAGES", 5)
    assert sorted(_search(any_db, "body")) == sorted(f"Bulk case {n}" for n in range(26, 31))


def test_the_case_list_says_when_a_search_read_only_the_newest_messages(
    admin, app_env, monkeypatch
):
    bulk_cases(app_env["DATABASE_URL"], 30)
    monkeypatch.setattr(case_lists, "SEARCHED_MESSAGES", 5)
    page = admin.get("/cases/?q=body").get_data(as_text=True)
    assert "the newest 5 messages that match" in page


def test_a_search_within_the_limit_says_nothing_of_it(admin, app_env):
    bulk_cases(app_env["DATABASE_URL"], 30)
    page = admin.get("/cases/?q=body").get_data(as_text=True)
    assert "messages that match" not in page


def _word_at(url: str, word: str, placed: dict[int, int]) -> None:
    """Messages with `word`, each in its case, at these message ids: {message id: case}."""
    from datetime import timedelta

    from sqlalchemy import insert

    from webapp.db import get_engine, utcnow

    with get_engine(url).begin() as conn:
        for message_id, case_id in placed.items():
            conn.execute(
                insert(Message.__table__).values(
                    id=message_id, case_id=case_id, direction="in", opened_case=False,
                    from_address="x@bulk.example", from_name="", to_addresses="",
                    cc_addresses="", subject="Again", text=f"a {word} in the lobby",
                    full_text="", message_id=f"<{word}{message_id}@x>", in_reply_to="",
                    references_ids="", backlog=False, parse_notes="",
                    received_at=utcnow() - timedelta(days=1), created_at=utcnow(),
                )
            )  # fmt: skip


def test_the_newest_matches_are_found_across_older_and_newer_messages(any_db, monkeypatch):
    """PostgreSQL asks for the newest ids first, a bucket of 10,000 ids at a time (migration
    0025): the messages it keeps are still the newest matches, wherever they lie."""
    bulk_cases(any_db, 12)
    _word_at(any_db, "narwhal", {100: 1, 200: 2, 300: 3, 30_001: 4, 30_002: 5,
                                 70_001: 6, 70_002: 7, 70_003: 8, 70_004: 9})  # fmt: skip
    _word_at(any_db, "okapi", {150: 10})
    monkeypatch.setattr(case_lists, "SEARCHED_MESSAGES", 5)
    assert sorted(_search(any_db, "narwhal")) == [f"Bulk case {n}" for n in range(5, 10)]
    with new_session(any_db) as db:
        assert case_lists.matching(db, "narwhal").limit == 5
    monkeypatch.setattr(case_lists, "SEARCHED_MESSAGES", 9)
    assert sorted(_search(any_db, "narwhal")) == sorted(f"Bulk case {n}" for n in range(1, 10))
    with new_session(any_db) as db:
        assert case_lists.matching(db, "narwhal").limit is None


def test_a_word_only_in_the_oldest_messages_is_found(any_db):
    bulk_cases(any_db, 12)
    _word_at(any_db, "okapi", {150: 10})
    _word_at(any_db, "narwhal", {90_001: 11})  # the newest message is far from the match
    assert _search(any_db, "okapi") == ["Bulk case 10"]
    assert _search(any_db, "okapi narwhal") == []


def test_the_matching_cases_are_written_into_the_statements_not_bound(any_db):
    """A bound array of ids is searched id by id for every row PostgreSQL looks at (five
    times slower for a frequent word); written in, it is one constant. The page is the same."""
    from sqlalchemy import event

    from webapp.db import get_engine

    bulk_cases(any_db, 30)
    bound: list[object] = []

    def _seen(_conn, _cursor, _statement, params, _context, _many):
        values = params.values() if isinstance(params, dict) else params or ()
        bound.extend(v for v in values if isinstance(v, list | tuple))

    engine = get_engine(any_db)
    event.listen(engine, "before_cursor_execute", _seen)
    try:
        with new_session(any_db) as db:
            page = case_queries.list_cases(db, q="body", per_page=10, page=2)
            filtered = case_queries.list_cases(
                db, q="body", filters=case_queries.CaseFilters(status="closed")
            )
    finally:
        event.remove(engine, "before_cursor_execute", _seen)
    assert [row.case.subject for row in page.rows] == [f"Bulk case {n}" for n in range(20, 10, -1)]
    assert page.total == 30
    assert filtered.total == 10  # every third case is closed
    assert [v for v in bound if len(v) > 2] == []  # the search buckets are two at most
