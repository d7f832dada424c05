"""Migrations: empty → head works and the models match what the migrations build."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

import webapp.models  # noqa: F401
from tests.helpers.databases import (
    COVERED,
    downgrade,
    fresh_database,
    migrate,
    postgres_answers,
)


def _check(url: str) -> None:
    migrate(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        names = set(inspect(conn).get_table_names())
        templates = (
            conn.execute(text("SELECT kind FROM email_template ORDER BY id")).scalars().all()
        )
    engine.dispose()
    assert diffs == [], f"models and migrations differ: {diffs}"
    assert {"user", "mailbox", "email_template", "apitoken", "alembic_version"} <= names
    assert templates[:2] == ["case_response", "auto_ack"]  # a fresh install has both defaults


def test_sqlite_empty_to_head_matches_models(tmp_path):
    _check(f"sqlite:///{tmp_path / 'm.db'}")
    COVERED.add("SQLite")


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_answers(), reason="no PostgreSQL answers on 127.0.0.1:5432")
def test_postgresql_empty_to_head_matches_models():
    with fresh_database() as url:
        _check(url)
    COVERED.add("PostgreSQL")


def _schema(url: str) -> dict:
    """Tables with their columns, keys and indexes, the Alembic revision and the default rows."""
    engine = create_engine(url)
    with engine.connect() as conn:
        db = inspect(conn)
        tables = {
            name: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in db.get_columns(name)
                ],
                "primary_key": db.get_pk_constraint(name)["constrained_columns"],
                "foreign_keys": sorted(
                    (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
                    for fk in db.get_foreign_keys(name)
                ),
                "unique": sorted(
                    (u["name"] or "", u["column_names"]) for u in db.get_unique_constraints(name)
                ),
                "indexes": sorted(
                    (i["name"], i["column_names"], bool(i["unique"])) for i in db.get_indexes(name)
                ),
            }
            for name in db.get_table_names()
        }
        revisions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        templates = (
            conn.execute(text("SELECT kind FROM email_template ORDER BY id")).scalars().all()
        )
    engine.dispose()
    return {"tables": tables, "revisions": revisions, "templates": templates}


def test_migrating_twice_is_harmless(tmp_path):
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    migrate(url)
    once = _schema(url)
    migrate(url)
    twice = _schema(url)
    assert "mailbox" in once["tables"]  # the schema compared is the real one
    assert len(once["revisions"]) == 1
    assert twice["tables"] == once["tables"]
    assert twice["revisions"] == once["revisions"]
    assert twice["templates"] == once["templates"]


@pytest.mark.postgres
def test_postgresql_compresses_mail_with_lz4(postgres_url):
    """pglz made storing a first fetch's raw mail about ten times slower (bench/)."""
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        lz4 = conn.execute(text(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
            "AND 'lz4' = ANY(enumvals)")).first()  # fmt: skip
        methods = dict(conn.execute(text(
            "SELECT attrelid::regclass::text || '.' || attname, attcompression "
            "FROM pg_attribute WHERE attname IN ('data', 'full_text', 'html') "
            "AND attrelid::regclass::text IN ('raw_message_body', 'message', 'attachment')"
        )).all())  # fmt: skip
    engine.dispose()
    if not lz4:
        pytest.skip("this PostgreSQL server is built without lz4")
    assert methods == {"raw_message_body.data": "l", "message.full_text": "l",
                       "message.html": "l", "attachment.data": "l"}  # fmt: skip


def _case_indexes(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes("case")}
    engine.dispose()
    return found


def test_sqlite_indexes_a_mailboxs_case_list(database_url):
    indexes = _case_indexes(database_url)
    assert indexes["ix_case_mailbox_id_updated_at"] == ["mailbox_id", "updated_at"]


@pytest.mark.postgres
def test_postgresql_indexes_a_mailboxs_case_list(postgres_url):
    indexes = _case_indexes(postgres_url)
    assert indexes["ix_case_mailbox_id_updated_at"] == ["mailbox_id", "updated_at"]


def test_downgrading_0008_drops_the_index_and_the_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'down.db'}"
    migrate(url)
    downgrade(url, "0007")
    engine = create_engine(url)
    with engine.connect() as conn:
        columns = [c["name"] for c in inspect(conn).get_columns("mailbox")]
    engine.dispose()
    assert "ix_case_mailbox_id_updated_at" not in _case_indexes(url)
    assert "move_to_folder" not in columns
