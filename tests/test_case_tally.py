"""How many cases the list and the API say there are: on PostgreSQL from case_tally, kept by
triggers (migration 0027), on SQLite by counting; the same answers on both."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, delete, text, update

from tests.helpers.databases import downgrade, migrate
from tests.helpers.rows import bulk_cases
from webapp.db import new_session
from webapp.models import Case
from webapp.services import case_lists, case_queries
from webapp.services.access import users


def _totals(url: str) -> dict[str, int]:
    """The totals a user reads: the case list's, by status, and the API's."""
    with new_session(url) as db:
        out = {"all": case_queries.list_cases(db).total}
        for status in ("open", "closed", "pending"):
            filters = case_queries.CaseFilters(status=status)
            out[status] = case_queries.list_cases(db, filters=filters).total
        out["api"] = case_lists.api_cases(db)[1]
        out["api open"] = case_lists.api_cases(db, status="open")[1]
    return out


def test_the_totals_follow_new_closed_and_deleted_cases(any_db):
    bulk_cases(any_db, 30)  # every third case closed, the others open
    assert _totals(any_db) == {"all": 30, "open": 20, "closed": 10, "pending": 0,
                               "api": 30, "api open": 20}  # fmt: skip
    with new_session(any_db) as db:
        db.exec(update(Case).where(Case.id.in_([1, 2])).values(status="pending"))
        db.exec(update(Case).where(Case.id == 4).values(status="open"))  # open already
        db.exec(delete(Case).where(Case.id == 3))  # a closed one
        db.commit()
    assert _totals(any_db) == {"all": 29, "open": 18, "closed": 9, "pending": 2,
                               "api": 29, "api open": 18}  # fmt: skip


def test_a_filter_other_than_the_status_still_counts_its_cases(any_db):
    bulk_cases(any_db, 30)
    with new_session(any_db) as db:
        agent = users.create_user(db, "agent@example.org", "a-long-password-1234")
        db.exec(update(Case).where(Case.id.in_([5, 6])).values(assignee_id=agent.id))
        db.commit()
        theirs = case_queries.CaseFilters(assignee=str(agent.id))
        nobodys = case_queries.CaseFilters(assignee="none", status="open")
        assert case_queries.list_cases(db, filters=theirs).total == 2
        assert case_queries.list_cases(db, filters=nobodys).total == 19  # 20 open, 5 among them


@pytest.mark.postgres
def test_the_tally_is_folded_and_keeps_its_sums(postgres_url, monkeypatch):
    bulk_cases(postgres_url, 30)
    monkeypatch.setattr(case_lists, "TALLY_FOLD_ROWS", 5)
    before = _totals(postgres_url)  # its first count folds the 30 rows
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM case_tally")).scalar()
    engine.dispose()
    assert rows == 2  # open and closed
    assert _totals(postgres_url) == before


@pytest.mark.postgres
def test_a_new_case_waits_for_no_other_transaction_filing_one(postgres_url):
    """Two workers filing at once: each adds rows, neither updates a shared one."""
    bulk_cases(postgres_url, 10)
    engine = create_engine(postgres_url)
    first, second = engine.connect(), engine.connect()
    insert_case = text(
        'INSERT INTO "case" (number, subject, status, requester_email, created_at, updated_at) '
        "VALUES (:n, 'New', 'open', '', now(), now())"
    )
    try:
        first.execute(insert_case, {"n": 100})  # not committed yet
        second.execute(text("SET lock_timeout = '2s'"))
        second.execute(insert_case, {"n": 101})
        second.commit()  # did not wait for the first
        assert _totals(postgres_url)["all"] == 11  # the first's case is not committed
        first.rollback()
        assert _totals(postgres_url)["all"] == 11
    finally:
        first.close()
        second.close()
        engine.dispose()


@pytest.mark.postgres
def test_the_migration_counts_the_cases_already_there(postgres_url):
    downgrade(postgres_url, "0026_case_list_ids")
    bulk_cases(postgres_url, 12)
    migrate(postgres_url)
    assert _totals(postgres_url)["all"] == 12
    assert _totals(postgres_url)["closed"] == 4


@pytest.mark.postgres
def test_emptying_the_case_table_empties_the_tally(postgres_url):
    bulk_cases(postgres_url, 12)
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text('TRUNCATE "case" CASCADE'))
    engine.dispose()
    assert _totals(postgres_url)["all"] == 0
