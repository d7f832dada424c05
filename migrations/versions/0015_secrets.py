"""a mailbox may log in without encryption only when its admin allowed it

Revision ID: 0015_secrets
Revises: 0014_team_audit
"""

from alembic import op
import sqlalchemy as sa


revision = '0015_secrets'
down_revision = '0014_team_audit'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allow_plaintext_login', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_column('allow_plaintext_login')
