"""Sending one outbox row: claim it, hand it to SMTP, record the outcome (see services.outbox).

The claim is an atomic UPDATE queued -> sending committed before connecting; "sent" is
a separate commit after the server accepted the message. Between the two a crash leaves
the row "sending", which services.outbox.recover_interrupted turns into "uncertain".
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from email.parser import BytesParser

from sqlalchemy import update
from sqlmodel import Session, col

from webapp import crypto
from webapp.db import utcnow
from webapp.mail.compose import POLICY
from webapp.mail.errors import AuthFailed, MailError
from webapp.mail.send import PermanentFailure, SendResult, SmtpSettings, send_message
from webapp.models import Mailbox, OutboxMessage
from webapp.models import outbox as states
from webapp.services import oauth
from webapp.services.fetching.leases import new_holder
from webapp.services.validation import is_loopback

log = logging.getLogger(__name__)

SEND_JOB_TIMEOUT = 120  # RQ kills a send job after this; the lease outlives it
MAX_ATTEMPTS = 10  # with the backoff below: about four hours of retries
MAX_BACKOFF = 3600


class NotSendable(Exception):
    """This mailbox cannot send the message at all (no SMTP host, a refused setting)."""

    kind = "not_sendable"


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: base, 2×base, 4×base … at most an hour (base: 60 s)."""
    base = float(os.environ.get("MAILCHANNEL_OUTBOX_BACKOFF_SECONDS") or 60)
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF))


def lease_ttl() -> timedelta:
    seconds = os.environ.get("MAILCHANNEL_OUTBOX_LEASE_SECONDS")
    return timedelta(seconds=float(seconds) if seconds else SEND_JOB_TIMEOUT + 60)


def deliver(db: Session, outbox_id: int, ca_bundle: str | None) -> str:
    """Claim one due row and send it; the row's state afterwards."""
    holder = new_holder()
    if not _claim(db, outbox_id, holder):
        row = db.get(OutboxMessage, outbox_id)
        return row.state if row else "gone"
    row = db.get(OutboxMessage, outbox_id)
    db.refresh(row)
    mailbox = db.get(Mailbox, row.mailbox_id)
    try:
        result = _send(db, mailbox, row, ca_bundle)
    except PermanentFailure as exc:
        return _failed(db, row.id, holder, exc.kind, _text(exc), exc.code, exc.server_reply)
    except (NotSendable, oauth.ReauthNeeded) as exc:
        return _failed(db, row.id, holder, exc.kind, _text(exc))
    except (MailError, oauth.OAuthFailed, crypto.SecretUnreadable) as exc:
        return _retry(db, row, holder, exc)
    except ValueError as exc:  # an address send_message refuses: no attempt can succeed
        return _failed(db, row.id, holder, "invalid", f"The message cannot be sent: {exc}.")
    except Exception as exc:  # a bug: visible on the row, never left "sending"
        log.exception("sending outbox message %s failed", outbox_id)
        return _failed(
            db, row.id, holder, "unexpected", f"Unexpected {type(exc).__name__}: {exc}"[:500]
        )
    _pause_for_tests()
    return _mark_sent(db, row.id, holder, result)


def _claim(db: Session, outbox_id: int, holder: str) -> bool:
    now = utcnow()
    claimed = db.exec(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == outbox_id, OutboxMessage.state == states.QUEUED)
        .where(col(OutboxMessage.next_attempt_at) <= now)
        .values(
            state=states.SENDING,
            holder=holder,
            lease_until=now + lease_ttl(),
            sending_started_at=now,
            attempts=OutboxMessage.attempts + 1,
            updated_at=now,
        )  # fmt: skip
    ).rowcount
    db.commit()
    return claimed == 1


def smtp_settings(
    mailbox: Mailbox, ca_bundle: str | None, access_token: str | None = None
) -> SmtpSettings:
    """The mailbox's SMTP settings, secrets decrypted in memory only."""
    host = (mailbox.smtp_host or "").strip()
    if not host:
        raise NotSendable(
            f"Outgoing mail is not set up for the mailbox {mailbox.name}: fill in SMTP Host in "
            "its Outgoing mail settings, then Send again."
        )
    if mailbox.smtp_security == "none" and not is_loopback(host):
        raise NotSendable(
            f"SMTP Security None is only allowed for a server on this machine, not {host}: "
            "choose STARTTLS or SSL/TLS in the mailbox's Outgoing mail settings."
        )
    login = mailbox.smtp_username or mailbox.username or mailbox.email_address
    if mailbox.auth_type == "oauth":
        return SmtpSettings(host, mailbox.smtp_port, mailbox.smtp_security, username=login,
                            access_token=access_token, ca_bundle=ca_bundle,
                            allow_plaintext_login=mailbox.allow_plaintext_login)  # fmt: skip
    password = crypto.decrypt(mailbox.smtp_password_enc) or crypto.decrypt(mailbox.password_enc)
    return SmtpSettings(host, mailbox.smtp_port, mailbox.smtp_security, username=login,
                        password=password, ca_bundle=ca_bundle,
                        allow_plaintext_login=mailbox.allow_plaintext_login)  # fmt: skip


def _send(db: Session, mailbox: Mailbox, row: OutboxMessage, ca_bundle: str | None) -> SendResult:
    """Send the stored bytes; OAuth: once more after a forced refresh if XOAUTH2 is refused."""
    msg = BytesParser(policy=POLICY).parsebytes(row.raw)
    recipients = [row.to_addr, *copied_to(msg)]
    if mailbox.auth_type != "oauth":
        return send_message(
            smtp_settings(mailbox, ca_bundle), msg, mailbox.email_address, recipients
        )
    token = oauth.access_token_for(db, mailbox)
    try:
        return send_message(smtp_settings(mailbox, ca_bundle, token), msg, mailbox.email_address,
                            recipients)  # fmt: skip
    except AuthFailed:  # refused at AUTH: nothing was sent, a retry is safe
        token = oauth.refresh(db, mailbox.id, stale_token=token)
        return send_message(smtp_settings(mailbox, ca_bundle, token), msg, mailbox.email_address,
                            recipients)  # fmt: skip


def copied_to(msg) -> list[str]:
    """The Cc header's addresses (a reply keeps the customer's Cc): recipients too."""
    header = msg["Cc"]
    return [a.addr_spec for a in header.addresses if a.addr_spec] if header is not None else []


def _pause_for_tests() -> None:
    """Tests: hold between the server's acceptance and "sent", for a SIGKILL to land there."""
    delay = float(os.environ.get("MAILCHANNEL_TEST_PAUSE_AFTER_SEND") or 0)
    if delay:
        time.sleep(delay)


def _text(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    advice = getattr(exc, "advice", "")
    return f"{message} {advice}".strip()


def _finish(db: Session, outbox_id: int, owner: str, **values) -> None:
    """Record an attempt's outcome, only if this worker still holds the row."""
    db.exec(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == outbox_id, OutboxMessage.holder == owner)
        .where(col(OutboxMessage.state).in_([states.SENDING, states.UNCERTAIN]))
        .values(lease_until=None, updated_at=utcnow(), **values)
    )
    db.commit()


def _mark_sent(db: Session, outbox_id: int, holder: str, result: SendResult) -> str:
    refused = "; ".join(f"{rcpt}: {code} {text}" for rcpt, (code, text) in result.refused.items())
    _finish(
        db, outbox_id, holder, state=states.SENT, sent_at=utcnow(), server_code=250,
        server_reply=result.server_reply[:300], last_error_kind=None, last_error=refused or None,
    )  # fmt: skip
    return states.SENT


def _failed(
    db: Session, outbox_id: int, holder: str, kind: str, text: str, code: int | None = None,
    reply: str | None = None,
) -> str:  # fmt: skip
    log.info("outbox message %s failed: %s", outbox_id, kind)
    _finish(db, outbox_id, holder, state=states.FAILED, last_error_kind=kind[:32],
            last_error=text, server_code=code or None, server_reply=reply or None)  # fmt: skip
    return states.FAILED


def _retry(db: Session, row: OutboxMessage, holder: str, exc: Exception) -> str:
    kind = getattr(exc, "kind", type(exc).__name__)
    code, reply = getattr(exc, "code", 0) or None, getattr(exc, "server_reply", "") or None
    if row.attempts >= MAX_ATTEMPTS:
        text = f"Gave up after {row.attempts} attempts. Last error: {_text(exc)}"
        return _failed(db, row.id, holder, kind, text, code, reply)
    due = utcnow() + retry_delay(row.attempts)
    text = (
        f"Attempt {row.attempts} failed: {_text(exc)} Next attempt at {due:%Y-%m-%d %H:%M:%S} UTC."
    )
    _finish(
        db, row.id, holder, state=states.QUEUED, next_attempt_at=due, job_enqueued_at=None,
        holder=None, last_error_kind=kind[:32], last_error=text, server_code=code,
        server_reply=reply,
    )  # fmt: skip
    return states.QUEUED
