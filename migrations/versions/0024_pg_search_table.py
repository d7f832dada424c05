"""PostgreSQL search: the words of each message in a narrow table of their own

0021 indexed an expression over the message row. A search that reads the newest matching
messages then fetched wide message rows (with their text) and recomputed to_tsvector on each
row it checked: a word in 13 % of 500,000 messages took a second. message_search keeps
(message_id, case_id, words) per message, kept by a trigger as messages are filed or edited
and removed with them (ON DELETE CASCADE), with a GIN index on words: the search reads this
narrow table alone. SQLite already has its FTS5 table of the same name (0021); nothing
changes there.

Revision ID: 0024_pg_search_table
Revises: 0023_contact_sort
"""

from alembic import op

revision = "0024_pg_search_table"
down_revision = "0023_contact_sort"
branch_labels = None
depends_on = None

INDEXED_CHARS = 100_000  # webapp/services/case_lists.py reads what this writes


def _document(row: str) -> str:
    return (
        f"to_tsvector('simple'::regconfig, coalesce({row}.subject, '') || ' ' || "
        f"coalesce({row}.from_name, '') || ' ' || coalesce({row}.from_address, '') || ' ' || "
        f"translate(coalesce({row}.from_address, ''), '@.', '  ') || ' ' || "
        f"left(coalesce({row}.text, ''), {INDEXED_CHARS}))"
    )


UP = [
    "CREATE TABLE message_search (message_id integer PRIMARY KEY "
    "REFERENCES message (id) ON DELETE CASCADE, case_id integer NOT NULL, "
    "words tsvector NOT NULL)",
    f"INSERT INTO message_search (message_id, case_id, words) "
    f"SELECT message.id, message.case_id, {_document('message')} FROM message",
    "CREATE INDEX ix_message_search_words ON message_search USING gin (words)",
    f"""CREATE FUNCTION message_search_keep() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO message_search (message_id, case_id, words)
        VALUES (NEW.id, NEW.case_id, {_document("NEW")})
        ON CONFLICT (message_id) DO UPDATE
        SET case_id = EXCLUDED.case_id, words = EXCLUDED.words;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER message_search_keep AFTER INSERT OR UPDATE OF "
    "case_id, subject, from_name, from_address, text ON message "
    "FOR EACH ROW EXECUTE FUNCTION message_search_keep()",
    "DROP INDEX IF EXISTS ix_message_search",
]
DOWN = [
    "DROP TRIGGER IF EXISTS message_search_keep ON message",
    "DROP FUNCTION IF EXISTS message_search_keep()",
    "DROP TABLE IF EXISTS message_search",
    f"CREATE INDEX ix_message_search ON message USING gin (({_document('message')}))",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWN:
            op.execute(statement)
