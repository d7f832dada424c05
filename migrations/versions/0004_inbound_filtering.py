"""inbound filtering

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('held_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('raw_message_id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('sender', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('sender_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('sender_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('automated', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('backlog', sa.Boolean(), nullable=False),
    sa.Column('mail_decision', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('mail_sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('mail_message_id', sqlmodel.sql.sqltypes.AutoString(length=998), nullable=True),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailbox.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['raw_message_id'], ['raw_message.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('raw_message_id')
    )
    with op.batch_alter_table('held_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_held_message_mail_message_id'), ['mail_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_held_message_mailbox_id'), ['mailbox_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_held_message_sender_key'), ['sender_key'], unique=False)
        batch_op.create_index('ix_held_message_state_mailbox', ['state', 'mailbox_id'], unique=False)

    op.create_table('sender_challenge',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sender_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('day', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('held_message_id', sa.Integer(), nullable=True),
    sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['held_message_id'], ['held_message.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sender_key', 'day', name='uq_sender_challenge_day')
    )
    with op.batch_alter_table('sender_challenge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sender_challenge_sent_at'), ['sent_at'], unique=False)

    op.create_table('contact_alias',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('contact_alias', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_alias_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contact_alias_email_key'), ['email_key'], unique=True)

    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authserv_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('confirmation_hours', sa.Integer(), nullable=False, server_default='72'))
        batch_op.add_column(sa.Column('no_new_case_template_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_mailbox_no_new_case_template_id', 'email_template', ['no_new_case_template_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_constraint('fk_mailbox_no_new_case_template_id', type_='foreignkey')
        batch_op.drop_column('no_new_case_template_id')
        batch_op.drop_column('confirmation_hours')
        batch_op.drop_column('authserv_id')

    with op.batch_alter_table('contact_alias', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_alias_email_key'))
        batch_op.drop_index(batch_op.f('ix_contact_alias_contact_id'))
    op.drop_table('contact_alias')

    with op.batch_alter_table('sender_challenge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sender_challenge_sent_at'))
    op.drop_table('sender_challenge')

    with op.batch_alter_table('held_message', schema=None) as batch_op:
        batch_op.drop_index('ix_held_message_state_mailbox')
        batch_op.drop_index(batch_op.f('ix_held_message_sender_key'))
        batch_op.drop_index(batch_op.f('ix_held_message_mailbox_id'))
        batch_op.drop_index(batch_op.f('ix_held_message_mail_message_id'))
    op.drop_table('held_message')
