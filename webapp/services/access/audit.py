"""The audit log: sign-ins, user changes, mailbox changes, OAuth, API tokens, case status.

Details name what changed (field names, an email tried at sign-in), never a value that is
a secret. `record` adds the event to the caller's transaction and flushes; the caller
commits, so an event is kept exactly when what it tells of is.
"""

from __future__ import annotations

from sqlalchemy.orm import aliased
from sqlmodel import Session, col, func, select

from webapp.models import AuditEvent, Mailbox, User
from webapp.services.mailboxes import PLAIN_FIELDS  # the settings the mailbox form saves

# Actions, as stored; LABELS says them in words for the audit page.
SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in_failed"
USER_CREATED = "user.created"
USER_ROLE = "user.role_changed"
USER_DEACTIVATED = "user.deactivated"
USER_REACTIVATED = "user.reactivated"
PASSWORD_CHANGED = "user.password_changed"
SIGNED_OUT_EVERYWHERE = "user.signed_out_everywhere"
MAILBOX_CREATED = "mailbox.created"
MAILBOX_CHANGED = "mailbox.changed"
MAILBOX_DELETED = "mailbox.deleted"
OAUTH_AUTHORIZED = "oauth.authorized"
OAUTH_REAUTH = "oauth.reauth_needed"
TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
CASE_CLOSED = "case.closed"
CASE_REOPENED = "case.reopened"
CASE_PENDING = "case.pending"
CASE_ASSIGNED = "case.assigned"
LABELS = {
    SIGN_IN: "Signed in",
    SIGN_IN_FAILED: "Sign-in failed",
    USER_CREATED: "User added",
    USER_ROLE: "Role changed",
    USER_DEACTIVATED: "User deactivated",
    USER_REACTIVATED: "User reactivated",
    PASSWORD_CHANGED: "Own password changed",
    SIGNED_OUT_EVERYWHERE: "Signed out everywhere",
    MAILBOX_CREATED: "Mailbox created",
    MAILBOX_CHANGED: "Mailbox changed",
    MAILBOX_DELETED: "Mailbox deleted",
    OAUTH_AUTHORIZED: "OAuth authorized",
    OAUTH_REAUTH: "Re-authorization needed",
    TOKEN_CREATED: "API token created",
    TOKEN_REVOKED: "API token revoked",
    CASE_CLOSED: "Case closed",
    CASE_REOPENED: "Case reopened",
    CASE_PENDING: "Case set to Pending",
    CASE_ASSIGNED: "Case assigned",
}
PER_PAGE = 50

# The mailbox columns compared for "which fields changed", by the name the form gives them;
# the secret ones are compared as encrypted columns and only ever named.
MAILBOX_SECRETS = {
    "password": "password_enc",
    "client_secret": "client_secret_enc",
    "smtp_password": "smtp_password_enc",
}
MAILBOX_SKIP = {"id", "email_key", "created_at", "updated_at", "setup_complete"}


def record(
    db: Session,
    action: str,
    actor: int | None = None,
    target: str = "",
    details: dict | None = None,
    address: str | None = None,
) -> AuditEvent:
    """Add one event to the caller's transaction (flushed, not committed)."""
    event = AuditEvent(
        action=action,
        actor_id=actor,
        target=(target or "")[:400],
        details=details or {},
        address=(address or "")[:64],
    )
    db.add(event)
    db.flush()
    return event


def mailbox_target(mailbox: Mailbox) -> str:
    return f"mailbox {mailbox.name} <{mailbox.email_address}> (#{mailbox.id})"


def user_target(user: User) -> str:
    return f"user {user.email} (#{user.id})"


def mailbox_snapshot(mailbox: Mailbox | None) -> dict:
    """What the form can change, to compare before and after a save; secrets as ciphertext."""
    if mailbox is None:
        return {}
    values = {name: getattr(mailbox, name) for name in PLAIN_FIELDS}
    values.update({name: getattr(mailbox, column) for name, column in MAILBOX_SECRETS.items()})
    return values


def changed_fields(before: dict, after: dict) -> list[str]:
    """The names whose values differ, never the values."""
    return sorted(n for n in after if n not in MAILBOX_SKIP and before.get(n) != after[n])


def mailbox_saved(
    db: Session, before: dict, mailbox: Mailbox, actor: int | None, address: str | None
) -> AuditEvent | None:
    """Mailbox created, or changed with the names of the fields that changed; commits."""
    if not before:
        event = record(db, MAILBOX_CREATED, actor, mailbox_target(mailbox), None, address)
    else:
        fields = changed_fields(before, mailbox_snapshot(mailbox))
        if not fields:
            return None
        event = record(
            db, MAILBOX_CHANGED, actor, mailbox_target(mailbox), {"fields": fields}, address
        )
    db.commit()
    return event


def page(db: Session, number: int, per_page: int = PER_PAGE) -> tuple[list[tuple], int]:
    """Events newest first with the acting user's email: ([(event, email or None)], total)."""
    actor = aliased(User)
    total = db.exec(select(func.count()).select_from(AuditEvent)).one()
    rows = db.exec(
        select(AuditEvent, actor.email)
        .join(actor, col(AuditEvent.actor_id) == actor.id, isouter=True)
        .order_by(col(AuditEvent.id).desc())
        .offset((number - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(rows), total


def as_json(event: AuditEvent, actor_email: str | None) -> dict:
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "action": event.action,
        "actor_id": event.actor_id,
        "actor": actor_email,
        "target": event.target,
        "details": event.details,
        "address": event.address or None,
    }
