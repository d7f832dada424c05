"""fetch options (move to folder after fetching) and the index of a mailbox's case list

Revision ID: 0008_fetch_options
Revises: 0007
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008_fetch_options'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('move_to_folder', sqlmodel.sql.sqltypes.AutoString(length=255),
                                      nullable=False, server_default=''))
    op.create_index('ix_case_mailbox_id_updated_at', 'case', ['mailbox_id', 'updated_at'])


def downgrade() -> None:
    op.drop_index('ix_case_mailbox_id_updated_at', table_name='case')
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_column('move_to_folder')
