"""search: full-text search of messages (PostgreSQL GIN expression index, SQLite FTS5 kept by
triggers), an index for the case list sorted by subject

Revision ID: 0021_search
Revises: 0019_watch
"""

from alembic import op

revision = "0021_search"
down_revision = "0019_watch"
branch_labels = None
depends_on = None

INDEXED_CHARS = 100_000  # webapp/services/case_lists.py: the same expression on both sides
PG_DOCUMENT = (
    "to_tsvector('simple'::regconfig, coalesce(message.subject, '') || ' ' || "
    "coalesce(message.from_name, '') || ' ' || coalesce(message.from_address, '') || ' ' || "
    "translate(coalesce(message.from_address, ''), '@.', '  ') || ' ' || "
    f"left(coalesce(message.text, ''), {INDEXED_CHARS}))"
)


def _fts_values(row: str) -> str:
    return (
        f"{row}.subject, {row}.from_name || ' ' || {row}.from_address, "
        f"substr({row}.text, 1, {INDEXED_CHARS})"
    )


SQLITE_UP = [
    # Contentless: the words only (the text stays in message). A row leaves the index through
    # the 'delete' command with the values it was indexed with, which the triggers have.
    "CREATE VIRTUAL TABLE message_search USING fts5(subject, sender, body, content='', "
    "tokenize='unicode61 remove_diacritics 2')",
    f"INSERT INTO message_search (rowid, subject, sender, body) "
    f"SELECT message.id, {_fts_values('message')} FROM message",
    f"""CREATE TRIGGER message_search_insert AFTER INSERT ON message BEGIN
        INSERT INTO message_search (rowid, subject, sender, body)
        VALUES (new.id, {_fts_values('new')});
    END""",
    f"""CREATE TRIGGER message_search_delete AFTER DELETE ON message BEGIN
        INSERT INTO message_search (message_search, rowid, subject, sender, body)
        VALUES ('delete', old.id, {_fts_values('old')});
    END""",
    f"""CREATE TRIGGER message_search_update
        AFTER UPDATE OF subject, from_name, from_address, text ON message BEGIN
        INSERT INTO message_search (message_search, rowid, subject, sender, body)
        VALUES ('delete', old.id, {_fts_values('old')});
        INSERT INTO message_search (rowid, subject, sender, body)
        VALUES (new.id, {_fts_values('new')});
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS message_search_update",
    "DROP TRIGGER IF EXISTS message_search_delete",
    "DROP TRIGGER IF EXISTS message_search_insert",
    "DROP TABLE IF EXISTS message_search",
]


# The case list sorted by subject ("Case 2" before "Case 10"): the terms of
# webapp.db.natural_order, then the id, so that a page is read from the index.
_LOWER = "lower(subject)"
_STEM = f"rtrim({_LOWER}, '0123456789')"
SUBJECT_INDEX = (
    f'CREATE INDEX ix_case_search_subject ON "case" '
    f"({_STEM}, (length({_LOWER}) - length({_STEM})), {_LOWER}, id)"
)


def upgrade() -> None:
    op.execute(SUBJECT_INDEX)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_message_search ON message USING gin (({PG_DOCUMENT}))")
    else:
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_case_search_subject")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_message_search")
    else:
        for statement in SQLITE_DOWN:
            op.execute(statement)
