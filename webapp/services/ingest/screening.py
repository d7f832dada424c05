"""Email Filtering: whether an incoming message may become a case. Decides, writes nothing.

route.py asks `screen` once it knows the case a message answers, and acts on the
verdict. The order:

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
Every stop becomes a HeldMessage row with the reason in words (ingest/held.py), and
the raw message's `error` says it too, so the fetch log shows why no case was made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from webapp.mail.automation import automation_reason
from webapp.mail.parse import ParsedMessage
from webapp.mail.thread import confirmation_ids
from webapp.models import Case, Mailbox
from webapp.models import intake as held_states
from webapp.models.contact import email_key
from webapp.models.intake import HeldMessage
from webapp.services.filters import intake_action, sender_decision
from webapp.services.ingest.lookups import Lookups
from webapp.services.ingest.matching import original_ids, outgoing_case
from webapp.services.validation import SenderFilterError, SenderRule, parse_sender_filter

_MACHINE = re.compile(r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply)\b", re.I)


@dataclass
class Stop:
    """The message stops here: held or filtered, with the reason in words."""

    reason: str  # held_states: OWN_MAILBOX, BLOCKED, CONFIRMATION, ...
    state: str  # held_states.HELD or held_states.FILTERED
    detail: str
    confirms: HeldMessage | None = None  # a reply to the confirmation mail of this one


@dataclass
class Verdict:
    """What screening decided: `stop` set means no case; else the case it joins (or None)."""

    sender: str
    automated: str | None
    stop: Stop | None = None
    case: Case | None = None
    create_contact: bool = True  # False for machines (bounces, no-reply senders)


def screen(
    found: Lookups,
    mailbox: Mailbox,
    parsed: ParsedMessage,
    case: Case | None,
    existing: HeldMessage | None,
) -> Verdict:
    """Apply the mailbox's Email Filtering to one message; `case` is the case it answers,
    `existing` the HeldMessage of an earlier screening of the same raw message."""
    own = found.own()
    sender = email_key(parsed.from_addr)
    machine = _is_machine(parsed, sender)
    automated = automation_reason(parsed, own)
    verdict = Verdict(sender, automated, create_contact=not machine)
    if existing is not None and existing.state == held_states.RELEASED:
        verdict.case = case  # a person or the sender said yes
        return verdict
    if sender and sender in own:
        return _stopped(
            verdict,
            held_states.OWN_MAILBOX,
            held_states.FILTERED,
            f"sent by our own mailbox address {sender}: a mail loop, so it opens no case",
        )
    case = case or outgoing_case(found, original_ids(parsed))
    known = _known(found, sender, case)
    rules = sender_rules(mailbox.sender_filter)
    decision = sender_decision(rules, sender, known_contact=known)
    if decision == "block":
        rule = next(r for r in rules if r.action == "block" and r.matches(sender))
        return _stopped(
            verdict,
            held_states.BLOCKED,
            held_states.FILTERED,
            f"the Sender Email Address Filter blocks {sender} (rule “block: {rule.pattern}”)",
        )
    confirmed = _confirmation_reply(found, parsed, sender, automated)
    if confirmed is not None:
        verdict.stop = Stop(held_states.CONFIRMATION_REPLY, held_states.FILTERED, "", confirmed)
        return verdict
    if case is not None:
        verdict.case = case
        return verdict
    if not mailbox.allow_new_case:
        return _stopped(
            verdict,
            held_states.NO_NEW_CASE,
            held_states.FILTERED,
            "not a reply to a known case, and Allow New Case is off for this mailbox",
        )
    if intake_action(decision, mailbox.confirm_unknown_senders) == "hold":
        return _stopped(
            verdict,
            held_states.CONFIRMATION,
            held_states.HELD,
            f"{sender or 'the sender'} is not a known contact: held until the sender confirms",
        )
    if decision == "unknown" and not mailbox.create_new_contact:
        return _stopped(
            verdict,
            held_states.UNKNOWN_SENDER,
            held_states.HELD,
            f"{sender or 'the sender'} is not a known contact and Create New Contact is off: "
            "held for review",
        )
    return verdict


def _stopped(verdict: Verdict, reason: str, state: str, detail: str) -> Verdict:
    verdict.stop = Stop(reason, state, detail)
    return verdict


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


def _known(found: Lookups, sender: str, case: Case | None) -> bool:
    """A contact (or a merged-away address of one), or someone taking part in the case."""
    if not sender:
        return False
    if found.contact(sender) is not None:
        return True
    return case is not None and found.participant(case.id, sender)


def _is_machine(parsed: ParsedMessage, sender: str) -> bool:
    """A bounce or a no-reply robot: never made into a contact."""
    return parsed.is_report or bool(_MACHINE.match(sender.rsplit("@", 1)[0]))


def _confirmation_reply(
    found: Lookups, parsed: ParsedMessage, sender: str, automated: str | None
) -> HeldMessage | None:
    """The held message whose confirmation mail this person answers (never an auto-reply)."""
    ids = confirmation_ids(parsed)
    if automated or not ids or not sender:
        return None
    return found.confirmation(ids, sender)
