"""push: watch leases and watcher heartbeats (IMAP IDLE)

Revision ID: 0019_watch
Revises: 0017_case_workspace
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0019_watch'
down_revision = '0017_case_workspace'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'watch_lease',
        sa.Column('mailbox_id', sa.Integer(), nullable=False),
        sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('acquired_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('watching_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('idle_supported', sa.Boolean(), nullable=True),
        sa.Column('last_event', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('last_event_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('reconnects', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=''),
        sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.ForeignKeyConstraint(['mailbox_id'], ['mailbox.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('mailbox_id'),
    )
    op.create_table(
        'watcher',
        sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('heartbeat_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('holder'),
    )
    with op.batch_alter_table('watcher', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_watcher_heartbeat_at'), ['heartbeat_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('watcher', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_watcher_heartbeat_at'))
    op.drop_table('watcher')
    op.drop_table('watch_lease')
