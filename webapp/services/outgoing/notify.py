"""Templated mail about cases: an agent's reply to the contact (and its Cc), the
acknowledgement of a new case; and the internal note, which is never emailed.

Mail goes through the outbox (services.outbox.enqueue); this module only decides whether
to write, to whom, with which template and in which thread.
"""

from __future__ import annotations

import logging
import re
from email.utils import getaddresses, parseaddr

from sqlalchemy import update
from sqlmodel import Session, col, select

from webapp.db import begin_writing, lock_all_for_transaction, utcnow
from webapp.mail.thread import reply_references
from webapp.models import Case, Contact, EmailTemplate, Mailbox, Message, OutboxMessage
from webapp.models.case import INCOMING, NOTE, OUTGOING
from webapp.models.contact import email_key
from webapp.services.filters import DEFAULT_CEILING, Decision, should_auto_ack
from webapp.services.outgoing import outbox, readiness
from webapp.services.templating import render

log = logging.getLogger(__name__)

AUTO_ACK = "auto_ack"
COMMENT = "comment"
MAX_CC = 20
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"]+@[^@\s<>(),;:\"]+\.[^@\s<>(),;:\"]+$")


class CommentError(Exception):
    """The comment cannot be emailed; the message says why, in the agent's words."""


def template_context(
    case: Case, mailbox: Mailbox, contact_name: str, contact_email: str, message: str,
    agent_name: str = "",
) -> dict:  # fmt: skip
    """The variables every email template may use (templating.VARIABLES)."""
    return {
        "case_number": case.number,
        "case_subject": case.subject,
        "contact_name": contact_name or contact_email,
        "contact_email": contact_email,
        "message": message,
        "agent_name": agent_name,
        "mailbox_name": mailbox.name,
    }


def recipient(db: Session, case: Case) -> tuple[str, str]:
    """The case's contact: (address, name); the requester's address when there is no contact."""
    contact = db.get(Contact, case.contact_id) if case.contact_id else None
    if contact is not None and contact.email:
        return contact.email, contact.name or ""
    return case.requester_email or "", ""


def thread_ids(db: Session, case: Case, contact_key: str) -> tuple[str | None, list[str]]:
    """In-Reply-To: the contact's latest message on the case; References: every id, ours and theirs."""
    messages = db.exec(
        select(Message.message_id, Message.direction, Message.from_address, Message.created_at)
        .where(Message.case_id == case.id, col(Message.direction) != NOTE)  # never emailed
        .order_by(col(Message.id))
    ).all()
    ours = db.exec(
        select(OutboxMessage.message_id, OutboxMessage.created_at)
        .where(OutboxMessage.case_id == case.id)
        .order_by(col(OutboxMessage.id))
    ).all()
    parent = None
    for message_id, direction, sender, _ in messages:
        if message_id and direction == "in" and email_key(sender) == contact_key:
            parent = message_id
    if parent is None:  # nothing from the contact: answer the latest message received
        parent = next((m[0] for m in reversed(messages) if m[0] and m[1] == "in"), None)
    dated = [(m[3], m[0]) for m in messages if m[0]] + [(o[1], o[0]) for o in ours if o[0]]
    ids = list(dict.fromkeys(i for _, i in sorted(dated, key=lambda pair: _naive(pair[0]))))
    return parent, ids


def parse_cc(text: str) -> list[str]:
    """The addresses typed in a Cc field (commas between them), each once; CommentError names
    the first one that is not an address."""
    out: list[str] = []
    for piece in re.split(r"[,;\n]", text or ""):
        address = parseaddr(piece.strip())[1]
        if not piece.strip():
            continue
        if not _ADDRESS.match(address or ""):
            raise CommentError(
                f"“{piece.strip()[:80]}” is not an email address: "
                "write addresses such as ada@example.org, with commas between them."
            )
        if email_key(address) not in {email_key(a) for a in out}:
            out.append(address)
    if len(out) > MAX_CC:
        raise CommentError(f"At most {MAX_CC} addresses can be copied; {len(out)} were given.")
    return out


def reply_cc(db: Session, case: Case) -> str:
    """The Cc a reply keeps by default (reply-all): the Cc of the latest email received on the
    case, without our own mailboxes and the contact the reply goes to."""
    last = db.exec(
        select(Message.cc_addresses)
        .where(Message.case_id == case.id, Message.direction == INCOMING)
        .order_by(col(Message.id).desc())
        .limit(1)
    ).first()
    if not last:
        return ""
    ours = set(db.exec(select(Mailbox.email_key)).all())
    ours.add(email_key(recipient(db, case)[0]))
    kept = [a for _, a in getaddresses([last]) if a and email_key(a) not in ours]
    return ", ".join(dict.fromkeys(kept))


def _naive(moment):
    return moment.replace(tzinfo=None) if moment is not None and moment.tzinfo else moment


def post_comment(
    db: Session, case: Case, *, author: str, text: str, idempotency_key: str, agent_name: str = "",
    cc: list[str] | None = None,
) -> OutboxMessage:  # fmt: skip
    """Email an agent's reply to the case's contact and add it to the conversation; commits.

    `author` is the agent's address (kept with the comment), `agent_name` their Name (the
    templates' agent_name; the address when empty). `cc`: the addresses copied (parse_cc);
    None keeps the customer's Cc (reply_cc).

    The same idempotency key (a double click, a resubmitted form) gives the same row.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # browsers post CRLF
    if not text.strip():
        raise CommentError("Write the reply first.")
    mailbox = db.get(Mailbox, case.mailbox_id) if case.mailbox_id else None
    problem = readiness.send_problem(db, mailbox)
    if problem is not None:  # the page disabled the form; a stale page or a script posted anyway
        raise CommentError(f"{problem.text} {problem.detail}".strip())
    to_addr, to_name = recipient(db, case)
    if not to_addr:
        raise CommentError("This case has no contact address to email the comment to.")
    key = f"{COMMENT}:{idempotency_key}"
    existing = outbox.by_key(db, key)
    if existing is not None:
        return existing
    if cc is None:
        cc = parse_cc(reply_cc(db, case))
    cc = [a for a in cc if email_key(a) != email_key(to_addr)]
    context = template_context(case, mailbox, to_name, to_addr, text, agent_name or author)
    template = (
        db.get(EmailTemplate, mailbox.case_response_template_id)
        if mailbox.case_response_template_id
        else None
    )
    try:
        subject = render(template.subject, context) if template else f"Re: {case.subject}"
        body = render(template.body, context) if template else text
    except Exception as exc:  # a template saved before a variable was removed, a sandbox refusal
        raise CommentError(
            f"The Case Response Template “{template.name}” does not render: {exc}"
        ) from exc
    parent, references = thread_ids(db, case, email_key(to_addr))
    row = outbox.enqueue(
        db, mailbox, to_addr=to_addr, to_name=to_name, subject=subject, text=body, kind=COMMENT,
        case_id=case.id, idempotency_key=key, in_reply_to=parent, references=references, cc=cc,
    )  # fmt: skip
    now = utcnow()
    message = Message(
        case_id=case.id, mailbox_id=mailbox.id, contact_id=case.contact_id, direction=OUTGOING,
        from_address=mailbox.email_address, from_name=author[:200], to_addresses=row.to_addr,
        cc_addresses=", ".join(cc), sent_at=now, subject=row.subject, text=text, full_text=body, message_id=row.message_id,
        in_reply_to=row.in_reply_to, references_ids=row.references_ids,
    )  # fmt: skip
    db.add(message)
    db.flush()
    db.exec(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == row.id)
        .values(case_message_id=message.id, created_by=author[:320])
    )
    db.exec(update(Case).where(col(Case.id) == case.id).values(updated_at=now))
    db.commit()
    db.refresh(row)
    return row


def post_note(
    db: Session, case: Case, *, author: str, text: str, agent_name: str = "", key: str = ""
) -> Message:
    """Add an internal note to the conversation: for the team only, never emailed; commits.

    `key` is the form's own (comments/forms.py): the same key again (a double click, a form
    sent twice) gives the note it added the first time. It is kept as the note's Message-ID,
    which no email can carry (notes are never sent, and .invalid is no domain); the check
    and the insert run under one lock (db.begin_writing, db.lock_all_for_transaction)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CommentError("Write the note first.")
    marker = note_marker(key) if key else None
    if marker is not None:
        begin_writing(db)
        lock_all_for_transaction(db, [f"note {marker}"])
        posted = db.exec(
            select(Message).where(
                col(Message.case_id) == case.id,
                col(Message.direction) == NOTE,
                col(Message.message_id) == marker,
            )
        ).first()
        if posted is not None:
            db.commit()
            return posted
    now = utcnow()
    note = Message(
        case_id=case.id, mailbox_id=case.mailbox_id, contact_id=None, direction=NOTE,
        from_address=author[:320], from_name=(agent_name or author)[:200], sent_at=now,
        received_at=now, message_id=marker,
        subject=case.subject, text=text, full_text=text,
    )  # fmt: skip
    db.add(note)
    db.exec(update(Case).where(col(Case.id) == case.id).values(updated_at=now))
    db.commit()
    db.refresh(note)
    return note


def note_marker(key: str) -> str:
    """The Message-ID kept on a note added by the form with this key (post_note)."""
    return f"<note-{key[:100]}@mailchannel.invalid>"


def acknowledge_new_case(
    db: Session, mailbox: Mailbox, case: Case, message: Message, template: EmailTemplate | None
) -> Decision:
    """Queue the Auto Acknowledgement for a case just opened by `message` (flushed, not committed).

    `template` is the mailbox's Auto Acknowledgement Template, None when it has none.
    Never for automated or backlog messages, once per case, at most hourly per sender and
    mailbox, under the ceiling of automatic mails: filters.should_auto_ack decides.
    """
    sender = email_key(message.from_address)
    if template is not None and not (mailbox.smtp_host or "").strip():
        decision = Decision(False, "outgoing mail (SMTP) is not set up for this mailbox")
    elif template is None or message.backlog or message.automated:
        # Refused whatever the counts say: spare the three queries (a first fetch of a
        # large mailbox is all backlog).
        decision = should_auto_ack(
            enabled=template is not None, new_case=True, sender=sender,
            automation_reason=message.automated, backlog=message.backlog, last_ack_at=None,
            now=utcnow(), sent_in_window=0,
        )  # fmt: skip
    else:
        now = utcnow()
        acknowledged = db.exec(
            select(OutboxMessage.id).where(
                OutboxMessage.case_id == case.id, OutboxMessage.kind == AUTO_ACK
            )
        ).first()
        decision = should_auto_ack(
            enabled=template is not None, new_case=True, sender=sender,
            automation_reason=message.automated, backlog=message.backlog,
            last_ack_at=outbox.last_of_kind(db, mailbox.id, sender, AUTO_ACK), now=now,
            sent_in_window=outbox.automatic_count(
                db, mailbox.id, sender, DEFAULT_CEILING.window_start(now)
            ),
            already_acknowledged=acknowledged is not None,
        )  # fmt: skip
    if not decision.send:
        log.info("no acknowledgement for case %s: %s", case.number, decision.reason)
        return decision
    contact = db.get(Contact, case.contact_id) if case.contact_id else None
    name = (contact.name if contact else "") or message.from_name
    context = template_context(case, mailbox, name, message.from_address, message.text)
    try:
        subject, body = render(template.subject, context), render(template.body, context)
    except Exception as exc:  # never let a broken template stop a message becoming a case
        log.warning("auto acknowledgement template %s does not render: %s", template.id, exc)
        return Decision(False, f"the Auto Acknowledgement Template does not render: {exc}")
    references = reply_references(message.references_ids.split(), message.message_id)
    outbox.enqueue(
        db, mailbox, to_addr=message.from_address, to_name=name, subject=subject, text=body,
        kind=AUTO_ACK, case_id=case.id, idempotency_key=f"{AUTO_ACK}:{mailbox.id}:{case.number}",
        in_reply_to=message.message_id, references=references, auto_submitted="auto-replied",
    )  # fmt: skip
    return decision
