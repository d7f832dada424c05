"""Closing and reopening a case, and its history: who did it, when, and how.

Called by the case page (Close, Reopen), the comment form (Send and close) and by
services/ingest/route.py, which decides when a new email reopens a closed case. Each
change is one conditional UPDATE: two agents pressing Close at once write one event.
Everything is written in the caller's transaction (flushed, not committed).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from webapp.db import utcnow
from webapp.models import Case, CaseEvent
from webapp.models.case import CLOSED, CLOSED_EVENT, OPEN, REOPENED_EVENT
from webapp.services.access import audit

# CaseEvent.via: how the change was made
CASE_PAGE = "case page"
SEND_AND_CLOSE = "send and close"
INCOMING_EMAIL = "incoming email"

Who = tuple[int | None, str | None]  # (user id, client address): who acted, for the audit log
AUDIT_ACTIONS = {CLOSED_EVENT: audit.CASE_CLOSED, REOPENED_EVENT: audit.CASE_REOPENED}


def close_case(
    db: Session, case: Case, by: str, via: str = CASE_PAGE, who: Who = (None, None)
) -> bool:
    """Close an open or pending case; False when it was closed already.

    `who`: the signed-in user's id and client address, for the audit log."""
    return _change(db, case, CLOSED, CLOSED_EVENT, col(Case.status) != CLOSED, by, via, None, who)


def reopen_case(
    db: Session,
    case: Case,
    by: str,
    via: str = CASE_PAGE,
    message_id: int | None = None,
    who: Who = (None, None),
) -> bool:
    """Open a closed case again; False when it was not closed."""
    is_closed = col(Case.status) == CLOSED
    return _change(db, case, OPEN, REOPENED_EVENT, is_closed, by, via, message_id, who)


def history(db: Session, case_id: int) -> list[CaseEvent]:
    """The case's events, oldest first."""
    return histories(db, [case_id])[case_id]


def histories(db: Session, case_ids: list[int]) -> dict[int, list[CaseEvent]]:
    """Case id -> its events, oldest first: one query for many cases."""
    out: dict[int, list[CaseEvent]] = {case_id: [] for case_id in case_ids}
    if case_ids:
        query = (
            select(CaseEvent)
            .where(col(CaseEvent.case_id).in_(case_ids))
            .order_by(col(CaseEvent.id))
        )
        for event in db.exec(query).all():
            out[event.case_id].append(event)
    return out


def _change(
    db: Session,
    case: Case,
    status: str,
    action: str,
    allowed,
    by: str,
    via: str,
    message_id: int | None = None,
    who: Who = (None, None),
) -> bool:
    now = utcnow()
    changed = db.exec(
        update(Case)
        .where(col(Case.id) == case.id, allowed)
        .values(status=status, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        return False
    # The object the caller (or a batch's lookups) holds shows it too; set as a change, so
    # that a rolled-back savepoint expires it.
    case.status, case.updated_at = status, now
    db.add(case)
    db.add(
        CaseEvent(
            case_id=case.id,
            action=action,
            actor=(by or "")[:320],
            via=via,
            message_id=message_id,
            created_at=now,
        )
    )
    audit.record(
        db, AUDIT_ACTIONS[action], who[0], f"case #{case.number}", {"via": via}, who[1]
    )  # flushes
    return True
