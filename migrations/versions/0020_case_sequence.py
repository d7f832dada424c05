"""case numbers from a PostgreSQL sequence; claims on raw messages (filing on every worker)

On PostgreSQL the sequence starts after the highest number given so far (the counter
row or the highest case, whichever is higher); SQLite keeps the counter row. The raw
rows get the claim of the worker filing them (services/ingest/claims.py) and an index
by Message-ID (a reply waits for the message it answers).
Downgrade writes the sequence's last number back into the counter row.

Revision ID: 0020_case_sequence
Revises: 0019_watch
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0020_case_sequence'
down_revision = '0019_watch'
branch_labels = None
depends_on = None

_HIGHEST = (
    "GREATEST((SELECT COALESCE(MAX(value), 0) FROM counter WHERE name = 'case'), "
    "(SELECT COALESCE(MAX(number), 0) FROM \"case\"))"
)


def upgrade() -> None:
    with op.batch_alter_table('raw_message') as batch:
        batch.add_column(
            sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True)
        )
        batch.add_column(sa.Column('claimed_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch.create_index('ix_raw_message_mailbox_message_id', ['mailbox_id', 'message_id'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE SEQUENCE case_number_seq')
        # setval(…, n, true): the next nextval gives n + 1; nothing to set before the first case
        op.execute(
            f"SELECT setval('case_number_seq', {_HIGHEST}, true) WHERE {_HIGHEST} > 0"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            "INSERT INTO counter (name, value) VALUES ('case', 0) ON CONFLICT (name) DO NOTHING"
        )
        op.execute(
            "UPDATE counter SET value = GREATEST(value, "
            "(SELECT COALESCE(MAX(number), 0) FROM \"case\"), "
            "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM case_number_seq)) "
            "WHERE name = 'case'"
        )
        op.execute('DROP SEQUENCE case_number_seq')
    with op.batch_alter_table('raw_message') as batch:
        batch.drop_index('ix_raw_message_mailbox_message_id')
        batch.drop_column('claimed_until')
        batch.drop_column('claimed_by')
