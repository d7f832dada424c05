"""Where a message goes: the one module that decides, and then asks the others to write.

For a parsed message, in this order:

0. The same email filed before (matching.filed_copy: the same Message-ID, sender and
   Date, fetched from another of our mailboxes or twice from one) is not filed again. The
   other mailbox it came through is noted on the message filed first (MessageMailbox) and
   the raw row is ignored with "duplicate of message #N"; nothing else happens (no
   screening, no acknowledgement, no reopening). The question is asked under a lock on
   the Message-ID, so two workers fetching two mailboxes file it once.
1. A reply to a task-assignment email goes into the task's history (services/tasks.py).
2. matching.py finds the case it answers, if any.
3. screening.py applies the mailbox's Email Filtering. A message it stops becomes a
   HeldMessage (held.py), with the automatic mail it may get (the confirmation mail,
   the no-new-case notice: services/outgoing/challenge.py). A reply to our confirmation
   mail releases the message it confirms, through `file_confirmed` below.
4. Otherwise filing.py writes its contact, a new case when it answers none, the message
   and its participants, attachments.py its attachments, and a new case gets its Auto
   Acknowledgement (services/outgoing/notify.py) in the same transaction.
5. A message from outside on a pending or closed case opens it again (services/case_status.py), with
   the sender as who reopened it. Not a message from one of our own mailboxes (a loop),
   nor an automated one (an out-of-office or a bounce answering our last reply would
   reopen every case we close).

A held message released later (by a person, the confirmation link or a reply) comes back
here through `file_held`. Everything is written in the caller's transaction, flushed and
not committed; `found` is the lookups of the batch or of the single row being filed.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from webapp.db import utcnow
from webapp.mail.parse import ParsedMessage, ParseError, parse_message
from webapp.models import Case, Mailbox, RawMessage, RawMessageBody
from webapp.models import intake as held_states
from webapp.models import message as raw_states
from webapp.models.case import CLOSED, PENDING
from webapp.models.contact import email_key
from webapp.models.intake import HeldMessage
from webapp.services import case_status, tasks
from webapp.services.ingest import filing, held, matching, screening
from webapp.services.ingest.attachments import add_attachments
from webapp.services.ingest.copies import Received
from webapp.services.ingest.lookups import Lookups
from webapp.services.ingest.parse_ahead import limits_for
from webapp.services.ingest.screening import Verdict
from webapp.services.outgoing import challenge, notify


def file_raw(
    db: Session, found: Lookups, mailbox: Mailbox, raw: RawMessage, parsed: ParsedMessage
) -> tuple[str, str | None]:
    """File one parsed raw message; the state and error to record on its row."""
    if tasks.route_task_reply(db, mailbox, parsed, raw):
        return raw_states.DONE, None
    ignored = file_message(db, found, mailbox, raw, parsed)
    return (raw_states.IGNORED if ignored else raw_states.DONE), ignored


def file_message(
    db: Session, found: Lookups, mailbox: Mailbox, raw: RawMessage, parsed: ParsedMessage
) -> str | None:
    """Add the message to a case; the reason when it is held or filtered instead."""
    copy = matching.filed_copy(found, parsed, raw.id)
    if copy is not None:
        return _duplicate(db, found, mailbox, raw, copy)
    own = found.own()
    sender = email_key(parsed.from_addr)
    existing = found.held(raw.id)
    case = matching.thread_case(found, parsed, sender)
    verdict = screening.screen(found, mailbox, parsed, case, existing)
    if verdict.stop is not None:
        return _stopped(db, found, mailbox, raw, parsed, existing, verdict)
    if existing is not None and existing.state != held_states.RELEASED:
        held.released_on_reprocess(db, existing)
    case = verdict.case
    if case is None and not mailbox.allow_new_case:
        return "not a reply to a known case, and Allow New Case is off for this mailbox"
    create = mailbox.create_new_contact and sender not in own and verdict.create_contact
    contact = filing.find_contact(db, found, parsed, create=create)
    opened = case is None
    if case is None:
        case = filing.open_case(db, found, mailbox, parsed, contact)
    message = filing.add_message(
        db, found, mailbox, raw, parsed, case, contact, opened, verdict.automated
    )
    add_attachments(db, mailbox, message.id, parsed)
    roles = {sender: "requester" if opened else "sender"}
    if opened:
        roles.update(
            {email_key(a): "cc" for a in [*parsed.to, *parsed.cc] if email_key(a) not in roles}
        )
    filing.add_participants(found, case.id, {k: v for k, v in roles.items() if k and k not in own})
    if opened:  # in this transaction: the case and its acknowledgement commit together
        template_id = mailbox.auto_ack_template_id
        template = found.template(template_id) if template_id else None
        notify.acknowledge_new_case(db, mailbox, case, message, template)
    else:  # a new case was created with this time already
        found.touch_case(case.id)
        if (
            case.status in (CLOSED, PENDING)
            and sender
            and sender not in own
            and not verdict.automated
        ):
            case_status.reopen_case(
                db, case, by=sender, via=case_status.INCOMING_EMAIL, message_id=message.id
            )
    return None


def _duplicate(
    db: Session, found: Lookups, mailbox: Mailbox, raw: RawMessage, copy: Received
) -> str:
    """Note the mailbox this email also came through; the outcome for the fetch log."""
    if copy.mailbox_id == mailbox.id:
        where = "received by this mailbox before"
    else:
        filing.add_mailbox(db, copy.id, mailbox.id, raw.id)
        first = db.get(Mailbox, copy.mailbox_id) if copy.mailbox_id else None
        where = f"received by {first.email_address if first else 'a deleted mailbox'} too"
    case = found.case(copy.case_id)
    shown = f", in case [#{case.number}]" if case is not None else ""
    return f"duplicate of message #{copy.id} ({where}): the same email is shown once{shown}"


def _stopped(
    db: Session,
    found: Lookups,
    mailbox: Mailbox,
    raw: RawMessage,
    parsed: ParsedMessage,
    existing: HeldMessage | None,
    verdict: Verdict,
) -> str:
    """Record a held or filtered message and its automatic mail; the reason, in words."""
    stop = verdict.stop
    if stop.confirms is not None:
        stop.detail = _confirm_by_reply(db, found, stop.confirms)
    row = held.record(db, existing, mailbox, raw, parsed, verdict)
    word = "held" if stop.state == held_states.HELD else "filtered"
    reason = f"{word}: {stop.detail}"
    if stop.reason == held_states.NO_NEW_CASE:
        decision = challenge.send_no_new_case_notice(db, mailbox, row, parsed)
    elif stop.reason == held_states.CONFIRMATION:
        row.expires_at = utcnow() + timedelta(hours=max(mailbox.confirmation_hours, 1))
        if row.mail_sent_at is not None:  # a reprocessed message never asks twice
            decision = row.mail_decision
        else:
            decision = challenge.send_challenge(db, mailbox, row, parsed)
    else:
        return reason
    held.note_mail_decision(db, row, decision)
    return f"{reason}; {decision}" if decision else reason


def _confirm_by_reply(db: Session, found: Lookups, confirmed: HeldMessage) -> str:
    """Release the held message whose confirmation mail this reply answers; what happened."""
    if confirmed.state != held_states.HELD:
        return (
            f"a reply to the confirmation mail of held message {confirmed.id}, "
            f"which is {confirmed.state} already"
        )
    try:
        case = file_confirmed(
            db, found, confirmed, by="the sender (reply to the confirmation mail)"
        )
    except held.ReleaseRefused as exc:
        return (
            f"a reply to the confirmation mail of held message {confirmed.id}, not released: {exc}"
        )
    return (
        f"a reply to the confirmation mail: held message {confirmed.id} was released into case "
        f"[#{case.number}]"
    )


def file_held(
    db: Session,
    found: Lookups,
    row: HeldMessage,
    by: str,
    allowed: tuple[str, ...] = held.RELEASABLE,
) -> Case:
    """File a held message into a case in the caller's transaction (flushed, not committed).

    The sender becomes a contact: a person or the sender has vouched for the address. The
    same email filed meanwhile from another of our mailboxes (it was held in this one only)
    is not filed again: the release notes this mailbox on it and answers its case.
    """
    raw = db.get(RawMessage, row.raw_message_id)
    body = db.get(RawMessageBody, row.raw_message_id)
    mailbox = db.get(Mailbox, row.mailbox_id)
    if raw is None or body is None or mailbox is None:
        raise held.ReleaseRefused("The raw message or its mailbox is gone.")
    try:
        parsed = parse_message(body.data, limits_for(mailbox))
    except ParseError as exc:
        raise held.ReleaseRefused(f"The message cannot be read: {exc.reason}") from exc
    sender = email_key(parsed.from_addr)
    copy = matching.filed_copy(found, parsed, raw.id)  # the same email, filed from elsewhere
    if (
        copy is None
        and not mailbox.allow_new_case
        and matching.answered_case(found, parsed, sender) is None
    ):
        raise held.ReleaseRefused(
            "Allow New Case is off for this mailbox and the message answers no case."
        )
    # Refusals above change nothing: the caller's transaction may go on (a confirmation reply).
    held.claim(db, row, by, allowed)
    if sender not in found.own():
        filing.find_contact(db, found, parsed, create=True)
    if copy is not None:  # released into the case that holds it already, not a second one
        state, error = raw_states.IGNORED, _duplicate(db, found, mailbox, raw, copy)
        case = found.case(copy.case_id)
    else:
        ignored = file_message(db, found, mailbox, raw, parsed)
        if ignored:
            raise held.ReleaseRefused(f"The message still cannot become a case: {ignored}")
        state, error = raw_states.DONE, None
        case = None
    db.exec(
        update(RawMessage)
        .where(col(RawMessage.id) == raw.id)
        .values(state=state, error=error, processed_at=utcnow())
    )
    db.flush()
    case = case or held.case_of(db, raw.id)
    assert case is not None
    return case


def file_confirmed(db: Session, found: Lookups, row: HeldMessage, by: str) -> Case:
    """File a confirmed message, then the same sender's other messages awaiting confirmation
    (they wrote twice before confirming once); flushed, not committed."""
    case = file_held(db, found, row, by, (held_states.HELD,))
    for other in held.senders_other_holds(db, row):
        try:
            file_held(db, found, other, by, (held_states.HELD,))
        except held.ReleaseRefused:
            continue  # refused before changing anything: it stays held for a person
    return case
