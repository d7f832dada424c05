"""Mailbox Setup: connect for real, count the messages, or say what failed and what to do."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlmodel import Session, select

from webapp import crypto
from webapp.db import utcnow
from webapp.mail.connect import ServerSettings
from webapp.mail.errors import AuthFailed, MailError
from webapp.mail.folders import survey
from webapp.models import Mailbox
from webapp.queue import get_queue
from webapp.services import oauth
from webapp.services.presets import password_refusing_provider

log = logging.getLogger(__name__)

# A verification nobody picked up after this long is shown as stuck and re-enqueued by the sweep.
STUCK_AFTER = timedelta(seconds=60)


def server_settings(
    mailbox: Mailbox, ca_bundle: str | None, access_token: str | None = None
) -> ServerSettings:
    """The connection settings of a mailbox, secrets decrypted in memory only."""
    oauth = mailbox.auth_type == "oauth"
    return ServerSettings(
        protocol=mailbox.protocol,
        host=mailbox.host,
        port=mailbox.port,
        username=mailbox.username or mailbox.email_address,
        password=None if oauth else crypto.decrypt(mailbox.password_enc),
        access_token=(access_token or crypto.decrypt(mailbox.access_token_enc)) if oauth else None,
        ca_bundle=ca_bundle,
        folder=mailbox.folder_list[0],
        allow_plaintext_login=mailbox.allow_plaintext_login,
    )


def mark_pending(db: Session, mailbox: Mailbox, job_id: str | None) -> None:
    mailbox.verify_state = "pending"
    mailbox.verify_step = "Waiting for a worker to pick up the check…"
    mailbox.verify_requested_at = utcnow()
    mailbox.verify_job_id = job_id
    mailbox.message_count = mailbox.importable_count = None
    mailbox.last_error_kind = mailbox.last_error = mailbox.last_error_advice = None
    db.add(mailbox)
    db.commit()


def enqueue_verification(mailbox_id: int, redis_url: str, queue_name: str) -> str:
    """Queue Mailbox Setup's check; the job runs worker.jobs.verify_mailbox. Its id."""
    job = get_queue(redis_url, queue_name).enqueue(
        "worker.jobs.verify_mailbox", mailbox_id, job_timeout=120, result_ttl=600, failure_ttl=3600
    )
    return job.id


def request_verification(
    db: Session, mailbox: Mailbox, redis_url: str | None, queue_name: str
) -> None:
    """Check the mailbox again: pending now, and a job for a worker when there is a queue.

    An OAuth mailbox with no token yet is answered at once, with no job: its next step is
    Get Authorization Code, and the callback asks for the check that counts."""
    if _not_authorized(mailbox):
        _needs_authorization(db, mailbox)
        return
    job_id = enqueue_verification(mailbox.id, redis_url, queue_name) if redis_url else None
    mark_pending(db, mailbox, job_id)


def _not_authorized(mailbox: Mailbox) -> bool:
    return mailbox.auth_type == "oauth" and not mailbox.access_token_enc


def _needs_authorization(db: Session, mailbox: Mailbox) -> None:
    mailbox.message_count = mailbox.importable_count = None
    mailbox.verify_job_id = None
    _fail(
        db,
        mailbox,
        "oauth_needed",
        "This mailbox is not authorized yet.",
        "Click “Get Authorization Code”, sign in with the mailbox's account and allow access; "
        "you come back here and the check runs again.",
    )


def _step(db: Session, mailbox: Mailbox, text: str) -> None:
    mailbox.verify_state = "running"
    mailbox.verify_step = text
    db.add(mailbox)
    db.commit()


def _fail(db: Session, mailbox: Mailbox, kind: str, message: str, advice: str) -> None:
    mailbox.verify_state = "error"
    mailbox.verify_step = ""
    mailbox.last_error_kind, mailbox.last_error, mailbox.last_error_advice = kind, message, advice
    db.add(mailbox)
    db.commit()


def run_verification(
    db: Session,
    mailbox_id: int,
    ca_bundle: str | None,
    counter: Callable[[ServerSettings], object] | None = None,
) -> Mailbox | None:
    """Connect with the saved settings and store the message count or a classified error.

    IMAP also lists the server's folders with their counts (Mailbox Setup's checkboxes);
    with Fetch mail since, how many of the messages would be imported."""
    mailbox = db.get(Mailbox, mailbox_id)
    if mailbox is None:
        return None
    if counter is None:
        chosen, since = mailbox.folder_list, mailbox.fetch_since

        def counter(settings: ServerSettings):
            return survey(settings, chosen, since)

    if _not_authorized(mailbox):
        _needs_authorization(db, mailbox)
        return mailbox
    family = "POP3" if mailbox.protocol.startswith("pop3") else "IMAP"
    _step(db, mailbox, f"Connecting to {mailbox.host}:{mailbox.port} ({family}) and logging in…")
    try:
        result = connect_with_refresh(db, mailbox, ca_bundle, counter)
    except oauth.OAuthFailed as exc:
        _fail(
            db, mailbox, exc.kind, exc.message, "Click “Get Authorization Code” to authorize again."
        )
        return mailbox
    except MailError as exc:
        log.info("verification of mailbox %s failed: %s", mailbox.id, exc.kind)
        _fail(db, mailbox, *explained(mailbox, exc))
        return mailbox
    except crypto.SecretUnreadable as exc:
        _fail(
            db,
            mailbox,
            "secret",
            str(exc),
            "Set ENCRYPTION_KEY to the key used when the mailbox "
            "was saved, or enter the password again and Save.",
        )
        return mailbox
    if mailbox.auth_type == "oauth" and not mailbox.oauth_account:
        # No id_token: the server's accepted XOAUTH2 login says whose token it is.
        mailbox.oauth_account = mailbox.username or mailbox.email_address
    mailbox.verify_state = "ok"
    mailbox.verify_step = ""
    mailbox.message_count = result.count
    folders = getattr(result, "folders", None)
    mailbox.server_folders = (
        [{"name": f.name, "messages": f.messages} for f in folders] if folders else None
    )
    mailbox.importable_count = getattr(result, "importable", None)
    mailbox.plaintext_warning = bool(result.plaintext)
    mailbox.verified_at = utcnow()
    db.add(mailbox)
    db.commit()
    return mailbox


def explained(mailbox: Mailbox, exc: MailError, on_setup: bool = True) -> tuple[str, str, str]:
    """kind, message and advice; a password rejected by Google or Microsoft says why.

    Mailbox Setup (on_setup) has Edit settings; the fetch log on the mailbox page has Edit."""
    owner = password_refusing_provider(mailbox.provider, mailbox.host)
    if exc.kind != "auth" or mailbox.auth_type == "oauth" or owner is None:
        return exc.kind, exc.message, exc.advice
    return (
        "auth_password_refused",
        f"{exc.message} {owner} refuses passwords (Basic authentication) for its mailboxes.",
        f"Switch to OAuth: {'Edit settings' if on_setup else 'Edit the mailbox'}, set Authentication Type "
        "to OAuth, fill in Client ID and Client Secret, and press Get Authorization Code.",
    )


def connect_with_refresh(db: Session, mailbox: Mailbox, ca_bundle: str | None, action):
    """Run action(settings); for OAuth with a fresh-enough token, and once more after a forced
    refresh when the server rejects the XOAUTH2 login (a token can be revoked early)."""
    if mailbox.auth_type != "oauth":
        return action(server_settings(mailbox, ca_bundle))
    token = oauth.access_token_for(db, mailbox)
    try:
        return action(server_settings(mailbox, ca_bundle, token))
    except AuthFailed:
        token = oauth.refresh(db, mailbox.id, stale_token=token)
        return action(server_settings(mailbox, ca_bundle, token))


def is_stuck(mailbox: Mailbox) -> bool:
    return (
        mailbox.verify_state == "pending"
        and mailbox.verify_requested_at is not None
        and utcnow() - mailbox.verify_requested_at > STUCK_AFTER
    )


def sweep_verifications(db: Session, redis_url: str, queue_name: str) -> int:
    """Ask again for the checks that stayed pending too long (their job was lost); how many."""
    count = 0
    for mailbox in db.exec(select(Mailbox).where(Mailbox.verify_state == "pending")):
        if is_stuck(mailbox):
            request_verification(db, mailbox, redis_url, queue_name)
            count += 1
    return count
