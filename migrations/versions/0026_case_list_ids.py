"""case list ids: the case id at the end of the indexes of the default order

The case list's default order is updated_at, then id. Its indexes held updated_at alone (or
after the status), so PostgreSQL read every row it skipped from the table to learn its id and
sorted each run of equal times again: the middle page of 100,000 cases read 50,000 table rows
(26 ms). With the id in the index, a page's ids come from the index alone (an index-only
scan: 8.5 ms; the whole page 65 → 45 ms). SQLite's indexes hold the row id already; it gets
the same indexes so that both databases match the models.

Not the mailbox's index (mailbox_id, updated_at): a mailbox's list also holds the cases with
an email through it (an OR), and given the id there PostgreSQL read the whole index and
sorted 100,000 rows on disk instead (its middle page 65 → 98 ms).

Revision ID: 0026_case_list_ids
Revises: 0025_search_recent
"""

from alembic import op

revision = "0026_case_list_ids"
down_revision = "0025_search_recent"
branch_labels = None
depends_on = None

# name: (the columns before, the columns after)
INDEXES = {
    "ix_case_updated_at": (["updated_at"], ["updated_at", "id"]),
    "ix_case_status_updated_at": (["status", "updated_at"], ["status", "updated_at", "id"]),
}


def _replace(columns_of) -> None:
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name="case")
        op.create_index(name, "case", columns_of(columns))


def upgrade() -> None:
    _replace(lambda columns: columns[1])


def downgrade() -> None:
    _replace(lambda columns: columns[0])
