"""Read-only JSON API behind bearer tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import wraps

from flask import Blueprint, g, jsonify, request, url_for
from sqlalchemy import Row
from sqlmodel import func, select

from webapp.models import Case, CaseEvent, Contact, Mailbox, Message, User
from webapp.models.case import ASSIGNED_EVENT, NOTE
from webapp.services import case_lists, case_queries, case_status
from webapp.services import contacts as contact_service
from webapp.services import mailboxes as mailbox_service
from webapp.services.access import audit as audit_service
from webapp.services.access import users
from webapp.services.fetching import status as fetch_status
from webapp.services.outgoing import outbox as outbox_service
from webapp.services.push import state as push_state

bp = Blueprint("api", __name__, url_prefix="/api/v1")

PER_PAGE = 50
MAX_PAGE = 10**9  # beyond it OFFSET would overflow the database's integers
MAILBOX_FIELDS = (
    "id",
    *mailbox_service.PLAIN_FIELDS,  # the settings a form saves, without secrets
    "message_count",
    "no_new_case_template_id",
    "authserv_id",
    "confirmation_hours",
    "after_fetch",  # leave | read | move | delete, from mark_as_read, move_to_folder, delete_after_fetch
)
MAILBOX_FIELDS += ("smtp_host", "smtp_port", "smtp_security", "smtp_username")  # never the password


def token_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if (
            scheme.lower() != "bearer"
            or not token.strip()
            or users.check_token(g.db, token.strip()) is None
        ):
            resp = jsonify(error="A valid API token is required: Authorization: Bearer <token>.")
            return resp, 401, {"WWW-Authenticate": 'Bearer realm="mailchannel"'}
        return view(*args, **kwargs)

    return wrapper


def page_number() -> int:
    try:
        return min(max(1, int(request.args.get("page", 1))), MAX_PAGE)
    except ValueError:
        return 1


def mailbox_json(m: Mailbox) -> dict:
    item = {name: getattr(m, name) for name in MAILBOX_FIELDS}
    item.update(
        folders=m.folder_list,  # IMAP: the folders read, each with its own cursor
        fetch_since=m.fetch_since.isoformat() if m.fetch_since else None,
    )
    item.update(
        status=m.status,
        setup_complete=m.setup_complete,
        verified_at=m.verified_at.isoformat() if m.verified_at else None,
        last_error=m.last_error,
        fetch_error=m.last_fetch_error,  # the last fetch failed: why, and when it tries again
        fetch_error_advice=m.last_fetch_error_advice,
        fetch_failures=m.fetch_failures,
        next_try_at=iso(m.next_fetch_due_at) if m.fetch_failures else None,
        password_set=bool(m.password_enc),
        client_secret_set=bool(m.client_secret_enc),
        smtp_password_set=bool(m.smtp_password_enc),
        authorized=bool(m.access_token_enc),
        oauth={
            "authorized": bool(m.access_token_enc),
            "account": m.oauth_account,
            "expires_at": m.token_expires_at.isoformat() if m.token_expires_at else None,
            "last_refresh": m.token_refreshed_at.isoformat() if m.token_refreshed_at else None,
            "reauth_needed": m.reauth_needed,
        }
        if m.auth_type == "oauth"
        else None,
    )
    return item


@bp.route("/mailboxes")
@token_required
def mailboxes():
    page = page_number()
    total = g.db.exec(select(func.count()).select_from(Mailbox)).one()
    rows = g.db.exec(
        select(Mailbox).order_by(Mailbox.id).offset((page - 1) * PER_PAGE).limit(PER_PAGE)
    ).all()
    counts = fetch_status.raw_message_counts(g.db, [m.id for m in rows])
    pushes = push_state.push_statuses(g.db, list(rows))
    items = []
    for m in rows:
        item = mailbox_json(m)
        item["messages_fetched"], item["messages_failed"] = counts.get(m.id, (0, 0))
        item["push"] = pushes[m.id].as_json()
        items.append(item)
    return jsonify(items=items, total=total, page=page, per_page=PER_PAGE)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset (SQLite hands stored times back naive)."""
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat()


def contact_json(contact: Contact | None) -> dict | None:
    return {"id": contact.id, "name": contact.name, "email": contact.email} if contact else None


def message_json(m: Message | Row, files: case_queries.MessageAttachments) -> dict:
    return {
        "id": m.id,
        "direction": m.direction,
        "sender": {"name": m.from_name, "email": m.from_address},
        "to": m.to_addresses,
        "cc": m.cc_addresses,
        "date": iso(m.sent_at),
        "received_at": iso(m.received_at),
        "subject": m.subject,
        "text": m.text,
        "full_text": m.full_text,
        "message_id": m.message_id if m.direction != NOTE else None,  # a note's is its form key
        "in_reply_to": m.in_reply_to,
        "automated": m.automated,
        "attachments": [a.as_json() for a in files.kept],
        "attachments_not_kept": [a.as_json() for a in files.not_kept],
    }


def event_json(event: CaseEvent) -> dict:
    """One line of a case's history: closed, reopened, pending or assigned (`to`: the
    assignee's name, "" for nobody), by whom, how and when."""
    return {
        "action": event.action,
        **({"to": event.detail} if event.action == ASSIGNED_EVENT else {}),
        "by": event.actor,
        "via": event.via,
        "message_id": event.message_id,
        "at": iso(event.created_at),
    }


def case_json(
    case: Case,
    contact: Contact | None,
    messages: list[dict],
    mailboxes: list[case_queries.MailboxRef],
    history: list[CaseEvent],
    assignee: User | None = None,
) -> dict:
    """A case; `mailboxes` are the addresses it came through, its own (replies go out
    through it) first."""
    return {
        "id": case.id,
        "number": case.number,
        "subject": case.subject,
        "status": case.status,  # open | pending | closed
        "assignee": (
            {"id": assignee.id, "name": assignee.display_name, "email": assignee.email}
            if assignee is not None
            else None
        ),
        "contact": contact_json(contact),
        "requester_email": case.requester_email,
        "mailbox_id": case.mailbox_id,
        "mailboxes": [box.email_address for box in mailboxes],
        "created_at": iso(case.created_at),
        "updated_at": iso(case.updated_at),
        "messages": messages,
        "history": [event_json(event) for event in history],
    }


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and len(value) < 10 else None


@bp.route("/cases")
@token_required
def cases():
    """Cases, oldest first, each with its messages and attachment metadata, the mailboxes it
    came through and its history: seven queries a page. `q` keeps those with a message
    matching its words; `after` (a case id, as `next` gives it) pages by keyset."""
    page = page_number()
    status = request.args.get("status") or None
    mailbox_id = _int_arg("mailbox_id")
    q = case_lists.clean(request.args.get("q"))
    after = _int_arg("after")
    rows, total = case_lists.api_cases(
        g.db, page, status=status, mailbox_id=mailbox_id, q=q, after=after
    )
    case_ids = [c.id for c, _, _ in rows]
    messages = case_lists.messages_by_case(g.db, case_ids)
    files = case_queries.attachments_by_message(
        g.db, [m.id for thread in messages.values() for m in thread], case_ids
    )
    boxes = case_queries.mailboxes_by_case(g.db, case_ids)
    history = case_status.histories(g.db, case_ids)
    items = [
        case_json(
            c,
            contact,
            [message_json(m, files[m.id]) for m in messages[c.id]],
            boxes[c.id],
            history[c.id],
            assignee,
        )
        for c, contact, assignee in rows
    ]
    more = {"status": status, "mailbox_id": mailbox_id, "q": q or None}
    following = (
        url_for("api.cases", **more, after=rows[-1][0].id) if len(rows) == PER_PAGE else None
    )
    return jsonify(items=items, total=total, page=page, per_page=PER_PAGE, next=following)


@bp.route("/contacts")
@token_required
def contacts():
    page = page_number()
    rows, total = contact_service.contacts_page(g.db, page)
    items = [
        {
            **contact_json(c),
            "cases": n,
            "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
        }
        for c, n in rows
    ]
    return jsonify(items=items, total=total, page=page, per_page=PER_PAGE)


def outbox_json(row) -> dict:
    """One outgoing message; message_id exactly as in its header, angle brackets included."""
    return {
        "id": row.id,
        "to": row.to_addr,
        "subject": row.subject,
        "state": row.state,
        "message_id": row.message_id,
        "kind": row.kind,
        "mailbox_id": row.mailbox_id,
        "case_id": row.case_id,
        "attempts": row.attempts,
        "error": row.last_error,
        "server_code": row.server_code,
        "server_reply": row.server_reply,
        "auto_submitted": row.auto_submitted,
        "created_at": iso(row.created_at),
        "next_attempt_at": iso(row.next_attempt_at) if row.state == "queued" else None,
        "sent_at": iso(row.sent_at),
    }


@bp.route("/outbox")
@token_required
def outbox():
    """Outgoing mail, newest first; ?mailbox=ID and ?state=failed|uncertain|… filter it."""
    page = page_number()
    rows, total = outbox_service.listing(
        g.db, mailbox_id=_int_arg("mailbox"), state=request.args.get("state") or None,
        page=page, per_page=PER_PAGE,
    )  # fmt: skip
    return jsonify(items=[outbox_json(r) for r in rows], total=total, page=page, per_page=PER_PAGE)


@bp.route("/audit")
@token_required
def audit():
    """The audit log, newest first: sign-ins, user, mailbox, OAuth, token and case changes."""
    page = page_number()
    rows, total = audit_service.page(g.db, page, PER_PAGE)
    items = [audit_service.as_json(event, email) for event, email in rows]
    return jsonify(items=items, total=total, page=page, per_page=PER_PAGE)
