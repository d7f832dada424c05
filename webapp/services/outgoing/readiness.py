"""Whether a mailbox can send mail now: asked before anyone writes a reply, not 15 s after.

A mailbox cannot send when
- it has no Outgoing mail: no SMTP Host, or SMTP Security None for a server elsewhere
  (delivery.smtp_settings refuses both);
- it is an OAuth mailbox whose provider refused the refresh token (SMTP uses the same token);
- its latest email that reached an end failed for good (state failed) with a mailbox-wide
  reason: login refused, TLS, no such host, connection refused, a refused setting. Such a
  failure does not mend by itself. Once someone fixes the settings and presses Send again
  on that email and it goes out, the mailbox sends again. A timeout, an unreachable host
  or a refused recipient says nothing about the next email and blocks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from webapp.models import Mailbox, OutboxMessage
from webapp.models import outbox as states
from webapp.services.validation import is_loopback

# last_error_kind of a failure that every next email from the mailbox would meet too
MAILBOX_WIDE = {
    "auth",
    "tls",
    "mechanism",
    "plaintext_refused",
    "encryption_missing",
    "host_not_found",
    "connection_refused",
    "not_sendable",
    "reauth_needed",
}
NOT_SET_UP = "not_set_up"
REAUTH = "reauth"
LAST_FAILED = "last_failed"


@dataclass(frozen=True)
class SendProblem:
    """Why the mailbox cannot send: `reason` (one of the names above), a sentence, and what
    failed and what to do (`detail`)."""

    reason: str
    text: str
    detail: str = ""
    failed: OutboxMessage | None = None  # the failed email to Send again (LAST_FAILED)


def send_problem(db: Session, mailbox: Mailbox | None) -> SendProblem | None:
    """None when the mailbox can send; else what stops it."""
    if mailbox is None:
        return SendProblem(NOT_SET_UP, "This case's mailbox was deleted: there is no address "
                           "to send from.")  # fmt: skip
    host = (mailbox.smtp_host or "").strip()
    if not host:
        return SendProblem(NOT_SET_UP, "This mailbox cannot send yet: set up its Outgoing mail.")
    if mailbox.smtp_security == "none" and not is_loopback(host):
        return SendProblem(NOT_SET_UP, "This mailbox cannot send yet: its Outgoing mail uses "
                           "SMTP Security None for a server elsewhere; choose STARTTLS or SSL/TLS.")  # fmt: skip
    if mailbox.auth_type == "oauth" and mailbox.reauth_needed:
        return SendProblem(REAUTH, "This mailbox cannot send: its OAuth authorization was "
                           "refused by the provider; authorize it again.")  # fmt: skip
    last = last_outcome(db, mailbox.id)
    if last is not None and last.state == states.FAILED and last.last_error_kind in MAILBOX_WIDE:
        return SendProblem(
            LAST_FAILED,
            "This mailbox cannot send: its last email failed.",
            f"{last.last_error or ''} Fix its Outgoing mail, then press Send again on that "
            "email; replies open again once it goes out.".strip(),
            failed=last,
        )
    return None


def last_outcome(db: Session, mailbox_id: int) -> OutboxMessage | None:
    """The mailbox's latest email that was sent or failed (by when that happened)."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.mailbox_id == mailbox_id)
        .where(col(OutboxMessage.state).in_([states.SENT, states.FAILED]))
        .order_by(col(OutboxMessage.updated_at).desc(), col(OutboxMessage.id).desc())
        .limit(1)
    )
    return db.exec(query).first()
