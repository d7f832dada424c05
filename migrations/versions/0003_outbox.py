"""outbox

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbox_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('case_message_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
    sa.Column('to_addr', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('to_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('to_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('html', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('auto_submitted', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=998), nullable=False),
    sa.Column('in_reply_to', sqlmodel.sql.sqltypes.AutoString(length=998), nullable=False),
    sa.Column('references_ids', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('job_enqueued_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
    sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('sending_started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_error_kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('server_code', sa.Integer(), nullable=True),
    sa.Column('server_reply', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['case_message_id'], ['message.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailbox.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_message_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_message_case_message_id'), ['case_message_id'], unique=False)
        batch_op.create_index('ix_outbox_message_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_message_idempotency_key'), ['idempotency_key'], unique=True)
        batch_op.create_index(batch_op.f('ix_outbox_message_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_outbox_message_rate', ['mailbox_id', 'to_key', 'created_at'], unique=False)

    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('smtp_host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('smtp_port', sa.Integer(), nullable=False, server_default='587'))
        batch_op.add_column(sa.Column('smtp_security', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='starttls'))
        batch_op.add_column(sa.Column('smtp_username', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('smtp_password_enc', sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_column('smtp_password_enc')
        batch_op.drop_column('smtp_username')
        batch_op.drop_column('smtp_security')
        batch_op.drop_column('smtp_port')
        batch_op.drop_column('smtp_host')

    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_message_rate')
        batch_op.drop_index(batch_op.f('ix_outbox_message_message_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_message_idempotency_key'))
        batch_op.drop_index('ix_outbox_message_due')
        batch_op.drop_index(batch_op.f('ix_outbox_message_case_message_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_message_case_id'))

    op.drop_table('outbox_message')
