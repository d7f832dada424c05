"""cases made: a partial index of the messages that opened a case, by mailbox

The mailbox page counts the cases its mail opened; joining every raw row the mailbox ever
stored cost 300 ms at 500,000 messages on SQLite. The index holds one entry per case.

Revision ID: 0022_cases_made
Revises: 0021_search
"""

import sqlalchemy as sa
from alembic import op

revision = "0022_cases_made"
down_revision = "0021_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_message_cases_made",
        "message",
        ["mailbox_id"],
        sqlite_where=sa.text("opened_case = 1"),
        postgresql_where=sa.text("opened_case"),
    )


def downgrade() -> None:
    op.drop_index("ix_message_cases_made", table_name="message")
