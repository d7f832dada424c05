"""Databases for the tests: migrations, PostgreSQL when one answers on 127.0.0.1:5432
(production runs there), and counting the SQL statements a block sends."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import event

from webapp.config import PROJECT_ROOT
from webapp.db import get_engine

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("TEST_PG_DB", "test")

COVERED: set[str] = set()

# For a test that must hold on both databases (conditional UPDATEs, locks between workers):
# the app's `database_url` (tests/conftest.py) is SQLite, then PostgreSQL when one answers.
ON_BOTH = pytest.mark.parametrize(
    "database_url",
    ["SQLite", pytest.param("PostgreSQL", marks=pytest.mark.postgres)],
    indirect=True,
)


def _alembic(database_url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = database_url
    return cfg


def migrate(database_url: str, revision: str = "head") -> None:
    command.upgrade(_alembic(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(_alembic(database_url), revision)


def postgres_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            pass
    except OSError:
        return False
    try:
        import psycopg

        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, connect_timeout=3
        ):
            return True
    except Exception:
        return False


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database for one test; dropped afterwards. Yields its SQLAlchemy URL."""
    import psycopg

    name = f"mailchannel_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, autocommit=True
    )
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        url = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
        get_engine(url).dispose()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def count_statements(database_url: str):
    """Counts the SQL statements sent while the block runs (to catch N+1 queries)."""
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)
