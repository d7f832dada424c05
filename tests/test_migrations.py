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
    ON_BOTH,
    downgrade,
    fresh_database,
    migrate,
    postgres_answers,
)
from webapp.services.case_lists import kept_by_models


def _check(url: str) -> None:
    migrate(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": kept_by_models})
        diffs = compare_metadata(context, SQLModel.metadata)
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


@ON_BOTH
def test_the_default_order_s_indexes_end_with_the_case_id(database_url):
    """updated_at then id, whole in the index: PostgreSQL reads a page's ids from the index
    alone (migration 0026); its downgrade gives the indexes back as they were."""
    url = database_url
    indexes = _case_indexes(url)
    assert indexes["ix_case_updated_at"] == ["updated_at", "id"]
    assert indexes["ix_case_status_updated_at"] == ["status", "updated_at", "id"]
    downgrade(url, "0025_search_recent")
    indexes = _case_indexes(url)
    assert indexes["ix_case_updated_at"] == ["updated_at"]
    assert indexes["ix_case_status_updated_at"] == ["status", "updated_at"]


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


def _mailbox_before_folders(url: str) -> None:
    """A mailbox saved before 0011, reading the Support folder, with fetching on."""
    migrate(url, "0010_used_code")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO mailbox (name, enabled, description, auth_type, provider, email_address, "
            "email_key, username, protocol, host, port, folder, client_id, scope, grant_type, "
            "tenant, auth_url, token_url, keep_attachments, max_attachment_bytes, "
            "process_task_replies, end_of_message_marker, allow_new_case, sender_filter, "
            "confirm_unknown_senders, create_new_contact, authserv_id, confirmation_hours, "
            "smtp_host, smtp_port, smtp_security, smtp_username, setup_complete, verify_state, "
            "verify_step, plaintext_warning, fetching_enabled, fetch_interval_seconds, "
            "mark_as_read, delete_after_fetch, move_to_folder, max_message_bytes, "
            "initial_fetch_done, fetch_identity, fetch_failures, reauth_needed, created_at, "
            "updated_at) VALUES ('Old', true, '', 'basic', 'other', 'a@example.com', "
            "'a@example.com', 'a@example.com', 'imaps', 'h.example', 993, 'Support', '', '', "
            "'authorization_code', 'common', '', '', true, 1, false, '', true, '', false, true, "
            "'', 72, '', 587, 'starttls', '', true, 'ok', '', false, true, 60, false, false, '', "
            "1, true, 'imap|h.example|a@example.com|Support', 0, false, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ))  # fmt: skip
    engine.dispose()
    migrate(url)


def _old_mailbox(url: str) -> tuple:
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT folders, fetch_identity FROM mailbox")).one()
    engine.dispose()
    return tuple(row)


def test_0011_moves_the_folder_into_folders(tmp_path):
    url = f"sqlite:///{tmp_path / 'folders.db'}"
    _mailbox_before_folders(url)
    assert _old_mailbox(url)[0] == "Support"


def test_0011_keeps_the_fetch_identity_of_the_account(tmp_path):
    """So that Continue does not start the mailbox's cursors over."""
    url = f"sqlite:///{tmp_path / 'identity.db'}"
    _mailbox_before_folders(url)
    assert _old_mailbox(url)[1] == "imap|h.example|a@example.com"
