"""Is this email filed already? The incoming messages we hold by Message-ID, asked under locks.

The same email fetched from two of our mailboxes by two workers at once must be filed once.
Whoever asks about a Message-ID first takes a lock on it that lasts until its transaction
ends (db.lock_all_for_transaction), so the other worker asks after that transaction
committed, and finds the message it filed. An answer is only true while the lock is held:
a batch (lookups.BatchLookups) forgets its answers whenever it commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlmodel import Session, col, select

from webapp.db import lock_all_for_transaction
from webapp.models import Message

_CHUNK = 500  # values per IN (…)


class Received(NamedTuple):
    """An incoming message we filed, as the question "is this email filed already?" sees it."""

    id: int
    case_id: int
    mailbox_id: int | None
    raw_message_id: int | None
    from_address: str
    sent_at: datetime | None


def lock_and_query(db: Session, ids: list[str]) -> dict[str, list[Received]]:
    """Lock these Message-IDs until the transaction ends, then: Message-ID -> the incoming
    messages filed with it, first filed first (one statement for the locks, one a chunk)."""
    lock_all_for_transaction(db, [f"message-id {i}" for i in ids])
    found: dict[str, list[Received]] = {}
    for start in range(0, len(ids), _CHUNK):
        query = (
            select(
                Message.message_id,
                Message.id,
                Message.case_id,
                Message.mailbox_id,
                Message.raw_message_id,
                Message.from_address,
                Message.sent_at,
            )
            .where(col(Message.message_id).in_(ids[start : start + _CHUNK]))
            .where(Message.direction == "in")
            .order_by(col(Message.id))
        )
        for message_id, *row in db.exec(query).all():
            found.setdefault(message_id, []).append(Received(*row))
    return found
