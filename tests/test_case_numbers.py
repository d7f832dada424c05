"""Case numbers: unique; on PostgreSQL from a sequence that never makes a worker wait."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, insert, text
from sqlmodel import Session

from tests.helpers.databases import COVERED, downgrade, fresh_database, migrate, postgres_answers
from webapp.db import new_session, utcnow
from webapp.models import Case, Counter
from webapp.services.ingest.filing import next_case_number

_NEEDS = [
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres_answers(), reason="no PostgreSQL answers on 127.0.0.1:5432"),
]


def _on_postgres(test):
    for mark in _NEEDS:
        test = mark(test)
    return test


@pytest.mark.postgres
def test_a_worker_takes_a_case_number_while_another_holds_its_transaction_open(postgres_url):
    with new_session(postgres_url) as first:
        held = next_case_number(first)  # its batch goes on filing: the transaction stays open
        engine = create_engine(postgres_url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SET lock_timeout = '1s'"))  # fail rather than wait
                with Session(bind=connection) as second:
                    other = next_case_number(second)
                    second.commit()
        finally:
            engine.dispose()
        first.commit()
    assert other == held + 1


@pytest.mark.postgres
def test_a_rolled_back_number_leaves_a_gap_and_numbers_stay_unique(postgres_url):
    taken = []
    for keep in (False, True, False, True):
        with new_session(postgres_url) as db:
            taken.append(next_case_number(db))
            if keep:
                db.commit()
            else:
                db.rollback()
    assert taken == sorted(set(taken))
    assert taken[0] == 1
    assert taken[-1] == 4  # the rolled-back numbers are not given again


def _seed_cases(url: str, numbers: list[int], counter: int) -> None:
    now = utcnow()
    with new_session(url) as db:
        for number in numbers:
            db.exec(
                insert(Case.__table__).values(
                    number=number,
                    subject=f"Case {number}",
                    status="open",
                    requester_email="",
                    created_at=now,
                    updated_at=now,
                )
            )
        db.exec(text("UPDATE counter SET value = :v WHERE name = 'case'"), params={"v": counter})
        db.commit()


@_on_postgres
@pytest.mark.parametrize(("numbers", "counter", "expected"), [([1, 2, 7], 5, 8), ([1, 2], 9, 10)])
def test_migrating_numbers_on_after_the_highest_case_or_counter(numbers, counter, expected):
    with fresh_database() as url:
        COVERED.add("PostgreSQL")
        migrate(url, "0019_watch")
        _seed_cases(url, numbers, counter)
        migrate(url)
        with new_session(url) as db:
            assert next_case_number(db) == expected
            db.commit()


@pytest.mark.postgres
def test_a_new_database_numbers_from_one(postgres_url):
    with new_session(postgres_url) as db:
        assert next_case_number(db) == 1


@pytest.mark.postgres
def test_downgrading_writes_the_last_number_back_into_the_counter(postgres_url):
    with new_session(postgres_url) as db:
        for _ in range(3):
            next_case_number(db)
        db.commit()
    downgrade(postgres_url, "0019_watch")
    with new_session(postgres_url) as db:  # the code of 0019 bumps the counter row
        bumped = db.exec(
            text("UPDATE counter SET value = value + 1 WHERE name = 'case' RETURNING value")
        ).scalar_one()
    assert bumped == 4


def test_sqlite_numbers_from_the_counter_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'numbers.db'}"
    migrate(url)
    with new_session(url) as db:
        numbers = [next_case_number(db) for _ in range(3)]
        db.commit()
        counter = db.get(Counter, "case")
    assert numbers == [1, 2, 3]
    assert counter.value == 3
