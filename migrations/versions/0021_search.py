"""search: full-text search of messages (PostgreSQL GIN expression index, SQLite FTS5 kept by
triggers), case.last_message_at kept by triggers and indexed, an index for the case list
sorted by subject

Revision ID: 0021_search
Revises: 0020_case_sequence
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0021_search"
down_revision = "0020_case_sequence"
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


# case.last_message_at: received_at of the case's last message (the highest id), kept by the
# database as messages are added, moved or deleted, for the list sorted by last message. Not
# in the models (webapp.services.case_lists.LAST_MESSAGE_AT reads it): no code writes it.
_LAST_OF = (
    "(SELECT m.received_at FROM message m WHERE m.case_id = {case} ORDER BY m.id DESC LIMIT 1)"
)
_SET_LAST = 'UPDATE "case" SET last_message_at = ' + _LAST_OF.format(case='"case".id')
SQLITE_LAST = [
    f"""CREATE TRIGGER case_last_message_insert AFTER INSERT ON message BEGIN
        {_SET_LAST} WHERE id = new.case_id;
    END""",
    f"""CREATE TRIGGER case_last_message_delete AFTER DELETE ON message BEGIN
        {_SET_LAST} WHERE id = old.case_id;
    END""",
    f"""CREATE TRIGGER case_last_message_update AFTER UPDATE OF case_id, received_at ON message
    BEGIN
        {_SET_LAST} WHERE id IN (old.case_id, new.case_id);
    END""",
]
PG_LAST = [
    f"""CREATE FUNCTION case_last_message() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'DELETE' THEN
            {_SET_LAST} WHERE id = NEW.case_id;
        END IF;
        IF TG_OP <> 'INSERT' THEN
            {_SET_LAST} WHERE id = OLD.case_id;
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER case_last_message AFTER INSERT OR DELETE OR UPDATE OF case_id, received_at "
    "ON message FOR EACH ROW EXECUTE FUNCTION case_last_message()",
]


def upgrade() -> None:
    op.add_column(
        "case", sa.Column("last_message_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
    )
    op.execute(_SET_LAST)
    op.create_index("ix_case_search_last_message", "case", ["last_message_at", "id"])
    for statement in PG_LAST if op.get_bind().dialect.name == "postgresql" else SQLITE_LAST:
        op.execute(statement)
    op.execute(SUBJECT_INDEX)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_message_search ON message USING gin (({PG_DOCUMENT}))")
    else:
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_case_search_subject")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS case_last_message ON message")
        op.execute("DROP FUNCTION IF EXISTS case_last_message()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS case_last_message_{name}")
    op.drop_index("ix_case_search_last_message", table_name="case")
    # In place (SQLite 3.35+ too): a batch copy of "case" would cascade to its messages.
    op.execute('ALTER TABLE "case" DROP COLUMN last_message_at')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_message_search")
    else:
        for statement in SQLITE_DOWN:
            op.execute(statement)
