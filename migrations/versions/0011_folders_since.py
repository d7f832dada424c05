"""Folders (one name per line, each with its own cursor) and Fetch mail since

Revision ID: 0011_folders_since
Revises: 0010_used_code
"""

from alembic import op
import sqlalchemy as sa


revision = '0011_folders_since'
down_revision = '0010_used_code'
branch_labels = None
depends_on = None

# Both the old single Folder and the new Folders, to copy one into the other.
MAILBOX = sa.table(
    'mailbox',
    sa.column('id', sa.Integer),
    sa.column('folder', sa.String),
    sa.column('folders', sa.Text),
    sa.column('fetch_identity', sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('folders', sa.Text(), nullable=False, server_default='INBOX'))
        batch_op.add_column(sa.Column('fetch_since', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('server_folders', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('importable_count', sa.Integer(), nullable=True))
    mailbox = MAILBOX
    conn = op.get_bind()
    for row in conn.execute(sa.select(mailbox.c.id, mailbox.c.folder, mailbox.c.fetch_identity)):
        # The fetch identity names the account only now: its folders keep their cursors apart.
        identity = row.fetch_identity
        if identity and identity.count('|') >= 3:
            identity = identity.rsplit('|', 1)[0]
        conn.execute(
            mailbox.update()
            .where(mailbox.c.id == row.id)
            .values(folders=(row.folder or '').strip() or 'INBOX', fetch_identity=identity)
        )
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_column('folder')
    with op.batch_alter_table('fetch_cursor', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('backlog_until', sa.BigInteger(), nullable=False, server_default='0')
        )


def downgrade() -> None:
    with op.batch_alter_table('fetch_cursor', schema=None) as batch_op:
        batch_op.drop_column('backlog_until')
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('folder', sa.String(length=255), nullable=False,
                                      server_default='INBOX'))
    mailbox = MAILBOX
    conn = op.get_bind()
    for row in conn.execute(sa.select(mailbox.c.id, mailbox.c.folders, mailbox.c.fetch_identity)):
        first = next((f.strip() for f in (row.folders or '').splitlines() if f.strip()), 'INBOX')
        identity = f'{row.fetch_identity}|{first}' if row.fetch_identity else None
        conn.execute(
            mailbox.update().where(mailbox.c.id == row.id).values(folder=first,
                                                                  fetch_identity=identity)
        )
    with op.batch_alter_table('mailbox', schema=None) as batch_op:
        batch_op.drop_column('importable_count')
        batch_op.drop_column('server_folders')
        batch_op.drop_column('fetch_since')
        batch_op.drop_column('folders')
