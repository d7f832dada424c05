"""Alembic environment: the same settings as the app, the same metadata as the models."""

from alembic import context
from sqlalchemy import pool
from sqlmodel import SQLModel, create_engine

import webapp.models  # noqa: F401  registers every table
from webapp.config import load_settings
from webapp.services.case_lists import kept_by_models

target_metadata = SQLModel.metadata


def _url() -> str:
    configured = context.config.attributes.get("database_url")
    return configured or load_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True, include_name=kept_by_models)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
