"""case events: who closed or reopened a case, and when

Revision ID: 0009_case_events
Revises: 0008_fetch_options
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0009_case_events"
down_revision = "0008_fetch_options"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written by hand; matches CaseEvent in webapp/models/case.py.
    op.create_table(
        "case_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("via", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("case_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_event_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("case_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_event_case_id"))

    op.drop_table("case_event")
