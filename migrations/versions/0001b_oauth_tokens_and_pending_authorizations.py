"""oauth tokens and pending authorizations

Revision ID: 0001b
Revises: 0001
Create Date: 2026-11-25 10:45:32.315749
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0001b'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_authorization',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('session_nonce', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('code_verifier_enc', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('token_url', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('redirect_uri', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailbox.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('oauth_authorization', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_authorization_mailbox_id'), ['mailbox_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_authorization_state'), ['state'], unique=True)

    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('oauth_account', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True))
        batch_op.add_column(sa.Column('token_refreshed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('reauth_needed', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('oauth_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('refresh_lock_holder', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('refresh_lock_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_column('refresh_lock_until')
        batch_op.drop_column('refresh_lock_holder')
        batch_op.drop_column('oauth_error')
        batch_op.drop_column('reauth_needed')
        batch_op.drop_column('token_refreshed_at')
        batch_op.drop_column('oauth_account')

    with op.batch_alter_table('oauth_authorization', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_authorization_state'))
        batch_op.drop_index(batch_op.f('ix_oauth_authorization_mailbox_id'))

    op.drop_table('oauth_authorization')
