"""PostgreSQL: compress the large columns (raw mail, message texts, attachments) with lz4

PostgreSQL compresses values over about 2 kB before it stores them, with pglz by
default; pglz is about ten times slower than lz4, and a first fetch of a large mailbox
writes little else. Only values written from now on are compressed with lz4; both
kinds are read alike. Nothing changes on SQLite, nor on a PostgreSQL server built
without lz4 (or older than 14).

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

COLUMNS = [
    ('raw_message_body', 'data'),
    ('message', 'text'),
    ('message', 'full_text'),
    ('message', 'html'),
    ('attachment', 'data'),
]


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return False
    return bool(bind.execute(sa.text(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
        "AND 'lz4' = ANY(enumvals)"
    )).first())


def _set(method: str) -> None:
    if not _lz4_available():
        return
    for table, column in COLUMNS:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET COMPRESSION {method}')


def upgrade() -> None:
    _set('lz4')


def downgrade() -> None:
    _set('default')
