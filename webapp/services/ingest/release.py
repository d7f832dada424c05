"""Release a held message into a case, as a person or the sender's confirmation link asks.

Each call is one transaction: it commits the case, or changes nothing and raises
held.ReleaseRefused with the reason a person can read.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from webapp.models import Case
from webapp.models.intake import HeldMessage
from webapp.services.ingest import held, route
from webapp.services.ingest.lookups import Lookups


def release(db: Session, held_id: int, by: str, allowed: tuple[str, ...] = held.RELEASABLE) -> Case:
    """Release a held message into a case and commit; raise ReleaseRefused when it cannot be."""
    return _committed(db, held_id, lambda row: route.file_held(db, Lookups(db), row, by, allowed))


def confirm_sender(db: Session, held_id: int, by: str) -> Case:
    """The sender confirmed (link): release this message and the sender's other ones; commits."""
    return _committed(db, held_id, lambda row: route.file_confirmed(db, Lookups(db), row, by))


def _committed(db: Session, held_id: int, work: Callable[[HeldMessage], Case]) -> Case:
    for attempt in (1, 2):
        row = db.get(HeldMessage, held_id)
        if row is None:
            raise held.ReleaseRefused("This message no longer exists.")
        try:
            case = work(row)
            db.commit()
            return case
        except held.ReleaseRefused:
            db.rollback()
            raise
        except IntegrityError:
            # A concurrent writer made the same contact, or filed this message: start again
            # from what is committed now.
            db.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
