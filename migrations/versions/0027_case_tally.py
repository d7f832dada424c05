"""case tally: PostgreSQL's count of cases by status, kept by triggers

Every page of the case list and of /api/v1/cases says how many cases there are, and on
PostgreSQL count(*) reads every index entry: 12 to 20 ms for 100,000 cases, the largest part
of an unfiltered page. case_tally keeps the count instead: a trigger adds a row (status, +1)
for each new case, (status, -1) for each one deleted, both for a status change. Only ever
INSERTs: two workers filing at once never wait for each other, as with the case numbers'
sequence (0020). A page sums the rows of its status, and folds them into one row per status
when there are many (services/case_lists.py, `count_by_status`). SQLite counts its b-tree quickly:
nothing changes there.

Revision ID: 0027_case_tally
Revises: 0026_case_list_ids
"""

from alembic import op

revision = "0027_case_tally"
down_revision = "0026_case_list_ids"
branch_labels = None
depends_on = None

UP = [
    "CREATE TABLE case_tally (id bigserial PRIMARY KEY, status varchar(16) NOT NULL, "
    "n bigint NOT NULL)",
    'INSERT INTO case_tally (status, n) SELECT status, count(*) FROM "case" GROUP BY status',
    """CREATE FUNCTION case_tally_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO case_tally (status, n) VALUES (NEW.status, 1);
        END IF;
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO case_tally (status, n) VALUES (OLD.status, -1);
        END IF;
        RETURN NULL;
    END $$""",
    'CREATE TRIGGER case_tally_row AFTER INSERT OR DELETE OR UPDATE OF status ON "case" '
    "FOR EACH ROW EXECUTE FUNCTION case_tally_row()",
    """CREATE FUNCTION case_tally_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM case_tally;
        RETURN NULL;
    END $$""",
    'CREATE TRIGGER case_tally_truncate AFTER TRUNCATE ON "case" '
    "FOR EACH STATEMENT EXECUTE FUNCTION case_tally_truncate()",
]
DOWN = [
    'DROP TRIGGER IF EXISTS case_tally_truncate ON "case"',
    'DROP TRIGGER IF EXISTS case_tally_row ON "case"',
    "DROP FUNCTION IF EXISTS case_tally_truncate()",
    "DROP FUNCTION IF EXISTS case_tally_row()",
    "DROP TABLE IF EXISTS case_tally",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWN:
            op.execute(statement)
