"""Database engine and sessions; the database is the only source of truth."""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, event, func, literal_column, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine


def utcnow() -> datetime:
    """Aware UTC now; SQLModel stores it as UTC on SQLite and PostgreSQL alike."""
    return datetime.now(UTC)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    """One engine (and its connection pool) per database URL for the life of the process."""
    engine = _engines.get(url)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(url) or _make_engine(url)
            _engines[url] = engine
    return engine


def _forget_pools_after_fork() -> None:
    # A forked child (RQ work horse) must not use the parent's pooled connections: it opens
    # its own and leaves the parent's alone (SQLAlchemy: dispose(close=False) after fork).
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def new_session(url: str) -> Session:
    return Session(get_engine(url), expire_on_commit=False)


def insert_ignore(db: Session, table):
    """INSERT … ON CONFLICT DO NOTHING for the session's database (SQLite or PostgreSQL)."""
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()


def begin_writing(db: Session) -> None:
    """Open the write transaction; on SQLite take the write lock now (BEGIN IMMEDIATE).

    pysqlite only begins a transaction before DML: a SAVEPOINT outside one would be
    the outermost transaction and its RELEASE would commit. BEGIN IMMEDIATE also
    waits for the lock (busy_timeout) instead of failing when a read snapshot must
    be upgraded after another writer committed.
    """
    connection = db.connection()
    if connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if not dbapi.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def lock_all_for_transaction(db: Session, names: list[str]) -> None:
    """Hold locks named `names` until the transaction ends, so that two workers asking the
    same question ("is this email filed already?") answer it one after the other.

    PostgreSQL: transaction-level advisory locks on 64 bits of each name's SHA-256, taken
    in one statement in the order of the keys (two workers never wait for each other in a
    circle); a statement run after it sees what the other transaction committed (READ
    COMMITTED). SQLite: nothing to do, the write transaction (BEGIN IMMEDIATE) already
    holds the one write lock of the database.
    """
    if not names or db.get_bind().dialect.name != "postgresql":
        return
    keys = sorted(
        {int.from_bytes(hashlib.sha256(n.encode()).digest()[:8], "big", signed=True) for n in names}
    )
    db.exec(_LOCK_ALL, params={"keys": keys})


_LOCK_ALL = text(
    "SELECT pg_advisory_xact_lock(k) FROM "
    "(SELECT unnest(CAST(:keys AS BIGINT[])) AS k ORDER BY 1) AS sorted"
)


def natural_order(expr) -> list[ColumnElement]:
    """ORDER BY terms that sort a trailing number by its value ("Customer 2" before
    "Customer 10"): the text without its trailing digits, then the digits' length, then the text."""
    lowered = func.lower(expr)
    # The digits written into the SQL, not bound: an index on these terms then matches
    # (migration 0021's on case.subject).
    stem = func.rtrim(lowered, literal_column("'0123456789'"))
    return [stem, func.length(lowered) - func.length(stem), lowered]
