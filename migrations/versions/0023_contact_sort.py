"""contact sort: case.contact_sort, the name the case list sorts "Contact" by, kept by triggers

The contact's name, else its address, else the case's requester address: what the Contact
column shows. Sorting by it joined every case to its contact and sorted them all (160 ms at
100,000 cases on SQLite); kept on the case and indexed with webapp.db.natural_order's terms,
a page is read from the index. Like case.last_message_at (0021) it is not in the models: the
database keeps it as cases are filed or change contact and as contacts are renamed.

Revision ID: 0023_contact_sort
Revises: 0022_cases_made
"""

import sqlalchemy as sa
from alembic import op

revision = "0023_contact_sort"
down_revision = "0022_cases_made"
branch_labels = None
depends_on = None

_OF_CASE = (
    "coalesce((SELECT coalesce(nullif(c.name, ''), c.email) FROM contact c "
    "WHERE c.id = {case}.contact_id), {case}.requester_email)"
)
_SET = 'UPDATE "case" SET contact_sort = ' + _OF_CASE.format(case='"case"')

_LOWER = "lower(contact_sort)"
_STEM = f"rtrim({_LOWER}, '0123456789')"
INDEX = (
    f'CREATE INDEX ix_case_search_contact ON "case" '
    f"({_STEM}, (length({_LOWER}) - length({_STEM})), {_LOWER}, id)"
)

SQLITE_UP = [
    f"""CREATE TRIGGER case_contact_sort_insert AFTER INSERT ON "case" BEGIN
        {_SET} WHERE id = new.id;
    END""",
    f"""CREATE TRIGGER case_contact_sort_update
        AFTER UPDATE OF contact_id, requester_email ON "case" BEGIN
        {_SET} WHERE id = new.id;
    END""",
    f"""CREATE TRIGGER case_contact_sort_contact AFTER UPDATE OF name, email ON contact BEGIN
        {_SET} WHERE contact_id = new.id;
    END""",
    # ON DELETE SET NULL fires no UPDATE OF trigger here: the cases take their requester now.
    """CREATE TRIGGER case_contact_sort_forget BEFORE DELETE ON contact BEGIN
        UPDATE "case" SET contact_sort = requester_email WHERE contact_id = old.id;
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS case_contact_sort_insert",
    "DROP TRIGGER IF EXISTS case_contact_sort_update",
    "DROP TRIGGER IF EXISTS case_contact_sort_contact",
    "DROP TRIGGER IF EXISTS case_contact_sort_forget",
]
PG_UP = [
    f"""CREATE FUNCTION case_contact_sort() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.contact_sort := {_OF_CASE.format(case="NEW")};
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER case_contact_sort BEFORE INSERT OR UPDATE OF contact_id, requester_email "
    'ON "case" FOR EACH ROW EXECUTE FUNCTION case_contact_sort()',
    f"""CREATE FUNCTION contact_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_SET} WHERE contact_id = NEW.id;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER contact_renamed AFTER UPDATE OF name, email ON contact "
    "FOR EACH ROW EXECUTE FUNCTION contact_renamed()",
]
PG_DOWN = [
    'DROP TRIGGER IF EXISTS case_contact_sort ON "case"',
    "DROP FUNCTION IF EXISTS case_contact_sort()",
    "DROP TRIGGER IF EXISTS contact_renamed ON contact",
    "DROP FUNCTION IF EXISTS contact_renamed()",
]


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.add_column("case", sa.Column("contact_sort", sa.String(), nullable=True))
    op.execute(_SET)
    op.execute(INDEX)
    for statement in PG_UP if _postgres() else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in PG_DOWN if _postgres() else SQLITE_DOWN:
        op.execute(statement)
    op.execute("DROP INDEX IF EXISTS ix_case_search_contact")
    # In place (SQLite 3.35+ too): a batch copy of "case" would cascade to its messages.
    op.execute('ALTER TABLE "case" DROP COLUMN contact_sort')
