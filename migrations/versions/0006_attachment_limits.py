"""attachment size limit and the reason an attachment was not kept

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_attachment_bytes', sa.Integer(), nullable=False,
                                      server_default=str(10 * 1024 * 1024)))
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('not_kept_reason', sqlmodel.sql.sqltypes.AutoString(length=200),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.drop_column('not_kept_reason')
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_column('max_attachment_bytes')
