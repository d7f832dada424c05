"""The automatic mails of Email Filtering: the confirmation mail and the no-new-case notice.

Both go through the outbox (services.notify) in the transaction that held or filtered
the message, so a rollback never leaves a mail behind. Each function returns what was
decided in words (sent, or why not), kept on the HeldMessage for the admin.
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, col, func, select

from webapp.config import load_settings
from webapp.db import insert_ignore, utcnow
from webapp.mail.authresults import check_sender
from webapp.mail.parse import ParsedMessage
from webapp.mail.thread import MAX_REFERENCES, reply_references
from webapp.models import EmailTemplate, Mailbox
from webapp.models import intake as held_states
from webapp.models.intake import HeldMessage, SenderChallenge
from webapp.services import templating
from webapp.services.filters import DEFAULT_CEILING, should_challenge
from webapp.services.outgoing import confirm, outbox

DAY = timedelta(days=1)
CONFIRM_PATH = "/confirm/"
NOTICES_PER_DAY = 1  # no-new-case notices per sender and mailbox


def confirmation_link(held_id: int, settings=None) -> str:
    """The public link that releases a held message, always built from EXTERNAL_URL."""
    settings = settings or load_settings()
    token = confirm.make_token(held_id, settings.secret_key)
    return settings.external_url.rstrip("/") + CONFIRM_PATH + token


def send_challenge(db: Session, mailbox: Mailbox, held: HeldMessage, parsed: ParsedMessage) -> str:
    """Queue the confirmation mail for a held message when it is safe; the decision in words."""
    now = utcnow()
    check = check_sender(parsed.auth_results_runs, mailbox.authserv_id, parsed.from_addr)
    decision = should_challenge(
        enabled=mailbox.confirm_unknown_senders,
        held=held.state == held_states.HELD,
        sender=held.sender_key,
        automation_reason=held.automated,
        backlog=held.backlog,
        challenges_today=_challenges_since(db, held.sender_key, now - DAY),
        sender_verified=check.verified,
        sent_in_window=outbox.automatic_count(
            db, mailbox.id, held.sender_key, DEFAULT_CEILING.window_start(now)
        ),
        verification_reason=check.reason,
    )
    if not decision.send:
        return decision.reason
    if not (mailbox.smtp_host or "").strip():
        return "held silently: outgoing mail (SMTP) is not set up for this mailbox"
    table = SenderChallenge.__table__
    claimed = db.exec(
        insert_ignore(db, table)
        .values(sender_key=held.sender_key, day=f"{now:%Y-%m-%d}", held_message_id=held.id,
                sent_at=now)
        .returning(table.c.id)
    ).first()  # fmt: skip
    if claimed is None:  # another worker challenged this sender today, a moment ago
        return "held silently: this sender got a confirmation mail today already"
    hours = max(mailbox.confirmation_hours, 1)
    link = confirmation_link(held.id)
    subject = f"Please confirm your message: {held.subject or '(no subject)'}"
    text = (
        f"Hello {parsed.from_name or held.sender},\n\n"
        f"we received your message “{held.subject or '(no subject)'}” at {mailbox.name}. "
        "We have not had mail from this address before, so we hold the message until you "
        "confirm that you sent it.\n\n"
        f"To confirm, open this link and press “Confirm”:\n{link}\n\n"
        "Or simply reply to this email.\n\n"
        f"If you did not write to us, ignore this email: the message is dropped after {hours} "
        "hours.\n"
    )
    message_id = _enqueue(
        db, mailbox, held, parsed, subject=subject, text=text, kind="confirmation",
        key=f"confirmation:{held.id}",
    )  # fmt: skip
    held.mail_sent_at, held.mail_message_id = now, message_id
    return f"confirmation mail sent to {held.sender_key} ({check.reason})"


def send_no_new_case_notice(
    db: Session, mailbox: Mailbox, held: HeldMessage, parsed: ParsedMessage
) -> str:
    """Tell a person (never a machine) that this mailbox opens no new cases, if a template is set."""
    if held.mail_sent_at is not None:
        return held.mail_decision
    if mailbox.no_new_case_template_id is None:
        return "no notice: no template is chosen for messages that open no case"
    template = db.get(EmailTemplate, mailbox.no_new_case_template_id)
    if template is None:
        return "no notice: the chosen template no longer exists"
    if not (mailbox.smtp_host or "").strip():
        return "no notice: outgoing mail (SMTP) is not set up for this mailbox"
    now = utcnow()
    refusal = _refusal(db, mailbox, held, now)
    if refusal:
        return f"no notice: {refusal}"
    context = {
        "case_number": "",
        "case_subject": held.subject,
        "contact_name": parsed.from_name or held.sender,
        "contact_email": held.sender,
        "message": parsed.text,
        "agent_name": "",
        "mailbox_name": mailbox.name,
    }
    subject = templating.render(template.subject, context)
    text = templating.render(template.body, context)
    message_id = _enqueue(
        db, mailbox, held, parsed, subject=subject, text=text, kind="no_new_case",
        key=f"no_new_case:{held.id}",
    )  # fmt: skip
    held.mail_sent_at, held.mail_message_id = now, message_id
    return f"notice sent to {held.sender_key} with the template “{template.name}”"


def _refusal(db: Session, mailbox: Mailbox, held: HeldMessage, now) -> str | None:
    if not held.sender_key:
        return "the message has no sender address"
    if held.automated:
        return f"automated message ({held.automated})"
    if held.backlog:
        return "the message was in the mailbox before fetching was turned on"
    sent = outbox.automatic_count(
        db, mailbox.id, held.sender_key, DEFAULT_CEILING.window_start(now)
    )
    if DEFAULT_CEILING.reached(sent):
        return DEFAULT_CEILING.describe(sent)
    notices = db.exec(
        select(func.count())
        .select_from(HeldMessage)
        .where(
            HeldMessage.mailbox_id == mailbox.id,
            HeldMessage.sender_key == held.sender_key,
            HeldMessage.reason == held_states.NO_NEW_CASE,
            col(HeldMessage.mail_sent_at) >= now - DAY,
        )
    ).one()
    if notices >= NOTICES_PER_DAY:
        return "this sender got this notice today already"
    return None


def _enqueue(db, mailbox, held, parsed, *, subject, text, kind, key) -> str:
    """Queue one automatic reply in the outbox; its Message-ID (a reply to it comes back)."""
    references = reply_references(parsed.references, parsed.message_id)
    row = outbox.enqueue(
        db, mailbox, to_addr=held.sender, to_name=held.sender_name, subject=subject, text=text,
        kind=kind, idempotency_key=key, in_reply_to=parsed.message_id,
        references=references[-MAX_REFERENCES:], auto_submitted="auto-replied",
    )  # fmt: skip
    return row.message_id


def _challenges_since(db: Session, sender_key: str, since) -> int:
    query = (
        select(func.count())
        .select_from(SenderChallenge)
        .where(SenderChallenge.sender_key == sender_key, col(SenderChallenge.sent_at) >= since)
    )
    return int(db.exec(query).one())
