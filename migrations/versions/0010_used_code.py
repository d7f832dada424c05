"""the SHA-256 of a mailbox's last exchanged authorization code (a pasted code used twice)

Revision ID: 0010_used_code
Revises: 0009_case_events
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010_used_code'
down_revision = '0009_case_events'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('used_code_sha256', sqlmodel.sql.sqltypes.AutoString(length=64),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_column('used_code_sha256')
