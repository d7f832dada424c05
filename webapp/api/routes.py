"""Read-only JSON API behind bearer tokens."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, g, jsonify, request
from sqlmodel import func, select

from webapp.models import Mailbox
from webapp.services import users

bp = Blueprint("api", __name__, url_prefix="/api/v1")

PER_PAGE = 50
MAILBOX_FIELDS = (
    "id", "name", "enabled", "description", "auth_type", "provider", "email_address", "username",
    "protocol", "host", "port", "folder", "client_id", "scope", "grant_type", "tenant", "auth_url",
    "token_url", "case_response_template_id", "keep_attachments", "process_task_replies",
    "end_of_message_marker", "allow_new_case", "auto_ack_template_id", "sender_filter",
    "confirm_unknown_senders", "create_new_contact", "message_count",
)


def token_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or users.check_token(g.db, token.strip()) is None:
            resp = jsonify(error="A valid API token is required: Authorization: Bearer <token>.")
            return resp, 401, {"WWW-Authenticate": 'Bearer realm="mailchannel"'}
        return view(*args, **kwargs)

    return wrapper


def page_number() -> int:
    try:
        return max(1, int(request.args.get("page", 1)))
    except ValueError:
        return 1


def mailbox_json(m: Mailbox) -> dict:
    item = {name: getattr(m, name) for name in MAILBOX_FIELDS}
    item.update(
        status=m.status,
        setup_complete=m.setup_complete,
        verified_at=m.verified_at.isoformat() if m.verified_at else None,
        last_error=m.last_error,
        password_set=bool(m.password_enc),
        client_secret_set=bool(m.client_secret_enc),
        authorized=bool(m.access_token_enc),
        oauth={
            "authorized": bool(m.access_token_enc),
            "account": m.oauth_account,
            "expires_at": m.token_expires_at.isoformat() if m.token_expires_at else None,
            "last_refresh": m.token_refreshed_at.isoformat() if m.token_refreshed_at else None,
            "reauth_needed": m.reauth_needed,
        } if m.auth_type == "oauth" else None,
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
    return jsonify(items=[mailbox_json(m) for m in rows], total=total, page=page, per_page=PER_PAGE)
