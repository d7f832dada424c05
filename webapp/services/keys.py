"""Key rotation: every secret at rest re-encrypted under the first key of ENCRYPTION_KEY.

Secrets live in columns whose names end in `_enc` (mailbox passwords, client secrets, OAuth
tokens, PKCE verifiers); every table's such columns are found from the models, so a new
encrypted column is rotated without changes here.
"""

from __future__ import annotations

from sqlalchemy import Column, Table, select, update
from sqlmodel import Session, SQLModel

from webapp import crypto
from webapp import models as _models  # noqa: F401 (registers every table in the metadata)


def encrypted_columns() -> dict[Table, list[Column]]:
    """Each table that holds secrets, with its encrypted columns."""
    found: dict[Table, list[Column]] = {}
    for table in SQLModel.metadata.sorted_tables:
        columns = [c for c in table.columns if c.name.endswith("_enc")]
        if columns:
            found[table] = columns
    return found


def rotate_secrets(db: Session) -> dict[str, int]:
    """Re-encrypt every stored secret with the first key, in one transaction; rows touched per
    table. SecretUnreadable (nothing changed) when a secret fits none of the keys."""
    touched: dict[str, int] = {}
    for table, columns in encrypted_columns().items():
        key = table.primary_key.columns.values()[0]
        count = 0
        for row in db.execute(select(key, *columns)).all():
            values = {}
            for column in columns:
                stored = row._mapping[column]
                if stored:
                    values[column.name] = _rotated(stored, table.name, column.name)
            if values:
                db.execute(update(table).where(key == row._mapping[key]).values(**values))
                count += 1
        touched[table.name] = count
    db.commit()
    return touched


def _rotated(stored: str, table: str, column: str) -> str:
    try:
        return crypto.rotate(stored)
    except crypto.InvalidToken as exc:
        raise crypto.SecretUnreadable(
            f"A secret in {table}.{column} cannot be decrypted with any key of ENCRYPTION_KEY: "
            "add the key it was saved with (after the new one) and run rotate-key again. "
            "Nothing was changed."
        ) from exc
