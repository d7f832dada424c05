"""A case's status (Open, Pending, Closed) and assignee, and its history: who changed
what, when, and how.

Called by the case page (Status, Close, Reopen, Assignee), the reply form (Send and close)
and by services/ingest/route.py, which decides when a new email opens a pending or closed
case again. Each change is one conditional UPDATE: two agents pressing Close at once write
one event. Everything is written in the caller's transaction (flushed, not committed).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from webapp.db import utcnow
from webapp.models import Case, CaseEvent, User
from webapp.models.case import (
    ASSIGNED_EVENT,
    CLOSED,
    CLOSED_EVENT,
    OPEN,
    PENDING,
    PENDING_EVENT,
    REOPENED_EVENT,
)
from webapp.services import case_queries
from webapp.services.access import audit

# CaseEvent.via: how the change was made
CASE_PAGE = "case page"
SEND_AND_CLOSE = "send and close"
INCOMING_EMAIL = "incoming email"

Who = tuple[int | None, str | None]  # (user id, client address): who acted, for the audit log
AUDIT_ACTIONS = {
    CLOSED_EVENT: audit.CASE_CLOSED,
    REOPENED_EVENT: audit.CASE_REOPENED,
    PENDING_EVENT: audit.CASE_PENDING,
}
EVENT_OF_STATUS = {OPEN: REOPENED_EVENT, PENDING: PENDING_EVENT, CLOSED: CLOSED_EVENT}


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
    """Open a closed or pending case again; False when it was open."""
    not_open = col(Case.status) != OPEN
    return _change(db, case, OPEN, REOPENED_EVENT, not_open, by, via, message_id, who)


def set_status(
    db: Session, case: Case, status: str, by: str, via: str = CASE_PAGE, who: Who = (None, None)
) -> bool:
    """Open, Pending (waiting for the customer) or Closed; False when it was so already."""
    if status not in EVENT_OF_STATUS:
        raise ValueError(f"{status!r} is not a case status")
    other = col(Case.status) != status
    return _change(db, case, status, EVENT_OF_STATUS[status], other, by, via, None, who)


def assignable_users(db: Session) -> list[User]:
    """The active members of the team, by name: who a case can be assigned to."""
    query = select(User).where(col(User.active).is_(True))
    return sorted(db.exec(query).all(), key=lambda u: (u.display_name.lower(), u.id))


def top_of_case(db: Session, case: Case, hidden_ids: list[int] | None = None) -> dict:
    """What the top of a case page shows: the case, its history, the team it can go to, and
    the messages the page leaves out (the history's links to them open the whole case)."""
    if hidden_ids is None:
        hidden_ids = case_queries.hidden_message_ids(db, case.id)
    return {
        "case": case,
        "history": history(db, case.id),
        "team": assignable_users(db),
        "hidden_ids": hidden_ids,
    }


def assign(
    db: Session,
    case: Case,
    assignee: User | None,
    by: str,
    via: str = CASE_PAGE,
    who: Who = (None, None),
) -> bool:
    """Give the case to a user of the team (None: to nobody); False when it was theirs already."""
    assignee_id = assignee.id if assignee is not None else None
    now = utcnow()
    someone_else = col(Case.assignee_id).is_distinct_from(assignee_id)
    if not _update_if(db, case, someone_else, now, assignee_id=assignee_id):
        return False
    name = assignee.display_name if assignee is not None else ""
    db.add(CaseEvent(case_id=case.id, action=ASSIGNED_EVENT, actor=(by or "")[:320], via=via,
                     detail=name[:320], created_at=now))  # fmt: skip
    details = {"via": via, "assignee": assignee.email if assignee is not None else None}
    audit.record(db, audit.CASE_ASSIGNED, who[0], f"case #{case.number}", details, who[1])
    return True


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
    if not _update_if(db, case, allowed, now, status=status):
        return False
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
    if action in AUDIT_ACTIONS:
        audit.record(
            db, AUDIT_ACTIONS[action], who[0], f"case #{case.number}", {"via": via}, who[1]
        )  # flushes
    db.flush()
    return True


def _update_if(db: Session, case: Case, condition, now, **values) -> bool:
    """Change the case's row only where `condition` holds (one UPDATE, so two agents at once
    change it once); False when it did not. The object the caller (or a batch's lookups)
    holds shows the change too, set as a change so that a rolled-back savepoint expires it."""
    changed = db.exec(
        update(Case)
        .where(col(Case.id) == case.id, condition)
        .values(updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        return False
    for name, value in {**values, "updated_at": now}.items():
        setattr(case, name, value)
    db.add(case)
    return True
