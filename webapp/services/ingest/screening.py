"""Email Filtering: what happens to an incoming message before it becomes a case.

filing.file_message calls `screen` once it knows the case a message answers. The order:

1. Mail from one of our own mailboxes is a loop: filtered.
2. Sender Email Address Filter: a block: rule filters the message (block wins over
   allow); a sender that is no contact, takes no part in the case and matches no
   allow: rule is unknown.
3. A reply to our confirmation mail releases the message it confirms.
4. A reply to a case (by its headers, or a bounce of our own mail) joins that case.
5. Allow New Case off: a message that answers no case is filtered (the sender may
   get a template saying so).
6. An unknown sender: held for confirmation (with one challenge, when it is safe to
   send one), or held for review when Create New Contact is off.

Automated messages never get an automatic mail (RFC 3834) but are still processed.
Every stop is a HeldMessage row with the reason in words, and the raw message's
`error` says it too, so the fetch log shows why no case was made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlmodel import Session

from webapp.db import utcnow
from webapp.mail.automation import automation_reason
from webapp.mail.parse import ParsedMessage
from webapp.models import Case, Mailbox, RawMessage
from webapp.models import intake as held_states
from webapp.models.contact import email_key
from webapp.models.intake import HeldMessage
from webapp.services.filters import intake_action, sender_decision
from webapp.services.ingest.lookups import lookups
from webapp.services.outgoing import challenge
from webapp.services.validation import SenderFilterError, SenderRule, parse_sender_filter

# Parts of a delivery or read report that carry (the headers of) the original message.
ORIGINAL_PARTS = {
    "message/rfc822",
    "message/global",
    "message/rfc822-headers",
    "message/global-headers",
    "text/rfc822-headers",
}
REPORT_PARTS = {"message/disposition-notification", "message/delivery-status"}
_ANGLE_ID = re.compile(r"<([^<>\s]+)>")
_MACHINE = re.compile(r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply)\b", re.I)


@dataclass
class Screened:
    """The outcome: `reason` set means the message stops here (held or filtered)."""

    reason: str | None = None
    case: Case | None = None
    create_contact: bool = True  # False for machines (bounces, no-reply senders)


def screen(
    db: Session,
    mailbox: Mailbox,
    raw: RawMessage,
    parsed: ParsedMessage,
    case: Case | None,
    own: set[str],
) -> Screened:
    """Apply the mailbox's Email Filtering to one message; `case` is the case it answers.

    `own` is our mailboxes' addresses (filing.own_addresses).
    """
    existing = lookups(db).held(raw.id)
    sender = email_key(parsed.from_addr)
    machine = _is_machine(parsed, sender)
    if existing is not None and existing.state == held_states.RELEASED:
        return Screened(None, case, create_contact=not machine)  # a person or the sender said yes
    automated = automation_reason(parsed, own)
    facts = _Facts(db, mailbox, raw, parsed, existing, sender, automated)
    if sender and sender in own:
        return facts.stop(
            held_states.OWN_MAILBOX,
            held_states.FILTERED,
            f"sent by our own mailbox address {sender}: a mail loop, so it opens no case",
        )
    case = case or outgoing_case(db, original_ids(parsed))
    known = _known(db, sender, case)
    rules = sender_rules(mailbox.sender_filter)
    decision = sender_decision(rules, sender, known_contact=known)
    if decision == "block":
        rule = next(r for r in rules if r.action == "block" and r.matches(sender))
        return facts.stop(
            held_states.BLOCKED,
            held_states.FILTERED,
            f"the Sender Email Address Filter blocks {sender} (rule “block: {rule.pattern}”)",
        )
    confirmed = _confirmation_reply(db, parsed, sender, automated)
    if confirmed is not None:
        return facts.stop(held_states.CONFIRMATION_REPLY, held_states.FILTERED,
                          _confirm_by_reply(db, confirmed))  # fmt: skip
    if case is not None:
        return facts.accept(case, machine)
    if not mailbox.allow_new_case:
        stopped = facts.stop(
            held_states.NO_NEW_CASE,
            held_states.FILTERED,
            "not a reply to a known case, and Allow New Case is off for this mailbox",
        )
        decision_text = challenge.send_no_new_case_notice(db, mailbox, facts.held, parsed)
        return facts.mail_decided(stopped, decision_text)
    action = intake_action(decision, mailbox.confirm_unknown_senders)
    if action == "hold":
        stopped = facts.stop(
            held_states.CONFIRMATION,
            held_states.HELD,
            f"{sender or 'the sender'} is not a known contact: held until the sender confirms",
        )
        facts.held.expires_at = utcnow() + timedelta(hours=max(mailbox.confirmation_hours, 1))
        if facts.held.mail_sent_at is not None:  # a reprocessed message never asks twice
            return facts.mail_decided(stopped, facts.held.mail_decision)
        return facts.mail_decided(
            stopped, challenge.send_challenge(db, mailbox, facts.held, parsed)
        )
    if decision == "unknown" and not mailbox.create_new_contact:
        return facts.stop(
            held_states.UNKNOWN_SENDER,
            held_states.HELD,
            f"{sender or 'the sender'} is not a known contact and Create New Contact is off: "
            "held for review",
        )
    return facts.accept(None, machine)


class _Facts:
    """One message under screening, and the HeldMessage row it gets when it stops."""

    def __init__(self, db, mailbox, raw, parsed, existing, sender, automated) -> None:
        self.db, self.mailbox, self.raw, self.parsed = db, mailbox, raw, parsed
        self.held: HeldMessage | None = existing
        self.sender, self.automated = sender, automated

    def stop(self, reason: str, state: str, detail: str) -> Screened:
        """Record the held or filtered message (flushed, not committed)."""
        held = self.held or HeldMessage(raw_message_id=self.raw.id, mailbox_id=self.mailbox.id)
        held.sender = self.parsed.from_addr[:320]
        held.sender_key = self.sender[:320]
        held.sender_name = (self.parsed.from_name or "")[:200]
        held.subject = (self.parsed.subject or "")[:1000]
        held.reason, held.state, held.detail = reason, state, detail
        held.automated = self.automated[:200] if self.automated else None
        held.backlog = self.raw.backlog
        held.decided_at, held.decided_by = None, ""
        self.db.add(held)
        self.db.flush()
        self.held = held
        word = "held" if state == held_states.HELD else "filtered"
        return Screened(f"{word}: {detail}")

    def mail_decided(self, stopped: Screened, decision: str) -> Screened:
        """Keep what was decided about an automatic mail, on the row and in the fetch log."""
        self.held.mail_decision = decision[:500]
        self.db.add(self.held)
        return Screened(f"{stopped.reason}; {decision}" if decision else stopped.reason)

    def accept(self, case: Case | None, machine: bool) -> Screened:
        if self.held is not None:  # reprocessed after the settings changed: it goes through now
            self.held.state = held_states.RELEASED
            self.held.decided_at, self.held.decided_by = utcnow(), "reprocess"
            self.db.add(self.held)
        return Screened(None, case, create_contact=not machine)


def sender_rules(text: str) -> list[SenderRule]:
    """The mailbox's rules; a stored text the form would refuse keeps its valid lines."""
    try:
        return parse_sender_filter(text or "")
    except SenderFilterError:
        rules = []
        for line in (text or "").splitlines():
            try:
                rules.extend(parse_sender_filter(line))
            except SenderFilterError:
                continue
        return rules


def _known(db: Session, sender: str, case: Case | None) -> bool:
    """A contact (or a merged-away address of one), or someone taking part in the case."""
    if not sender:
        return False
    if lookups(db).contact(sender) is not None:
        return True
    return case is not None and lookups(db).participant(case.id, sender)


def _is_machine(parsed: ParsedMessage, sender: str) -> bool:
    """A bounce or a no-reply robot: never made into a contact."""
    return parsed.is_report or bool(_MACHINE.match(sender.rsplit("@", 1)[0]))


# -- replies to our own mail: bounces, and the confirmation mail ---------------------


def original_ids(parsed: ParsedMessage) -> list[str]:
    """Message-IDs this message refers to: In-Reply-To, References, and in a delivery or
    read report the original message's Message-ID (RFC 3464 / RFC 8098 parts)."""
    ids = [*parsed.in_reply_to, *reversed(parsed.references)]
    for item in parsed.attachments if parsed.is_report else ():
        if item.content_type in ORIGINAL_PARTS:
            headers = BytesHeaderParser(policy=compat32).parsebytes(item.data[:65536])
            ids.extend(_ANGLE_ID.findall(" ".join(headers.get_all("message-id") or [])))
        elif item.content_type in REPORT_PARTS:
            text = item.data[:65536].decode("utf-8", "replace")
            for line in text.splitlines():
                if line.lower().startswith("original-message-id:"):
                    ids.extend(_ANGLE_ID.findall(line))
    normalised = [i if i.startswith("<") else f"<{i}>" for i in ids]
    return [i[:998] for i in dict.fromkeys(normalised)][:100]


def outgoing_case(db: Session, ids: list[str]) -> Case | None:
    """The case of a message we hold or sent, by its Message-ID (a reply or a bounce)."""
    if not ids:
        return None
    found = lookups(db)
    by_id = {**found.outbox_cases(ids), **found.message_cases(ids)}
    for message_id in ids:
        if message_id in by_id:
            return found.case(by_id[message_id])
    return None


def _confirmation_reply(
    db: Session, parsed: ParsedMessage, sender: str, automated: str | None
) -> HeldMessage | None:
    """The held message whose confirmation mail this person answers (never an auto-reply)."""
    ids = confirmation_ids(parsed)
    if automated or not ids or not sender:
        return None
    return lookups(db).confirmation(ids, sender)


def confirmation_ids(parsed: ParsedMessage) -> list[str]:
    """The Message-IDs under which a reply may answer one of our confirmation mails."""
    return [*parsed.in_reply_to, *parsed.references][:100]


def _confirm_by_reply(db: Session, held: HeldMessage) -> str:
    from webapp.services.ingest import held as held_service  # held files messages through filing

    if held.state != held_states.HELD:
        return f"a reply to the confirmation mail of held message {held.id}, which is {held.state} already"
    try:
        case = held_service.file_confirmed(
            db, held, by="the sender (reply to the confirmation mail)"
        )
    except held_service.ReleaseRefused as exc:
        return f"a reply to the confirmation mail of held message {held.id}, not released: {exc}"
    return (
        f"a reply to the confirmation mail: held message {held.id} was released into case "
        f"[#{case.number}]"
    )
