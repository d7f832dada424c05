"""message mailboxes: the other mailboxes of ours that an email filed once came through

Revision ID: 0012_case_mailboxes
Revises: 0011_folders_since
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0012_case_mailboxes"
down_revision = "0011_folders_since"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written by hand; matches MessageMailbox in webapp/models/case.py.
    op.create_table(
        "message_mailbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("raw_message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailbox.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["raw_message_id"], ["raw_message.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "mailbox_id", name="uq_message_mailbox"),
    )
    with op.batch_alter_table("message_mailbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_mailbox_mailbox_id"), ["mailbox_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("message_mailbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_mailbox_mailbox_id"))

    op.drop_table("message_mailbox")
