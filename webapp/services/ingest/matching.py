"""Which case a message answers: a question only, nothing is written here.

A reply is matched by In-Reply-To/References to a message we hold, or by the case
token ([#123]) in the subject only when the sender already takes part in that case:
a stranger (or a forged From of a stranger) quoting someone else's case number
opens a new case instead of writing into theirs. A bounce or a read report is
matched by the Message-ID of our own mail that it carries.

The same email fetched twice, from two of our mailboxes (support@ and sales@ both in To)
or from one mailbox in two copies, is the message filed first (`filed_copy`): the same
Message-ID, sender and Date. The sender and Date guard against a mailer that gives
different emails one Message-ID; a message without a Message-ID is never matched.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from webapp.mail.parse import ParsedMessage
from webapp.mail.thread import answered_ids, capped_ids, case_numbers, nearest_first
from webapp.models import Case
from webapp.models.contact import email_key
from webapp.services.ingest.copies import Received
from webapp.services.ingest.lookups import Lookups

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


def thread_case(found: Lookups, parsed: ParsedMessage, sender: str) -> Case | None:
    """The case this message answers, or None for a new thread."""
    ids = answered_ids(parsed)
    if ids:
        by_id = found.message_cases(ids)
        for message_id in ids:
            if message_id in by_id:
                return found.case(by_id[message_id])
    for number in case_numbers(parsed.subject):
        case = found.case_numbered(number)
        if case is not None and sender and found.participant(case.id, sender):
            return case
    return None


def original_ids(parsed: ParsedMessage) -> list[str]:
    """Message-IDs this message refers to: In-Reply-To, References, and in a delivery or
    read report the original message's Message-ID (RFC 3464 / RFC 8098 parts)."""
    ids = nearest_first(parsed)
    for item in parsed.attachments if parsed.is_report else ():
        if item.content_type in ORIGINAL_PARTS:
            headers = BytesHeaderParser(policy=compat32).parsebytes(item.data[:65536])
            ids.extend(_ANGLE_ID.findall(" ".join(headers.get_all("message-id") or [])))
        elif item.content_type in REPORT_PARTS:
            text = item.data[:65536].decode("utf-8", "replace")
            for line in text.splitlines():
                if line.lower().startswith("original-message-id:"):
                    ids.extend(_ANGLE_ID.findall(line))
    return capped_ids(i if i.startswith("<") else f"<{i}>" for i in ids)


def outgoing_case(found: Lookups, ids: list[str]) -> Case | None:
    """The case of a message we hold or sent, by its Message-ID (a reply or a bounce)."""
    if not ids:
        return None
    by_id = {**found.outbox_cases(ids), **found.message_cases(ids)}
    for message_id in ids:
        if message_id in by_id:
            return found.case(by_id[message_id])
    return None


def answered_case(found: Lookups, parsed: ParsedMessage, sender: str) -> Case | None:
    """The case a message answers by its headers, its case token, or as a reply to our mail."""
    return thread_case(found, parsed, sender) or outgoing_case(found, original_ids(parsed))


def filed_copy(found: Lookups, parsed: ParsedMessage, raw_id: int) -> Received | None:
    """The incoming message filed before that is this same email, fetched again (from another
    of our mailboxes, or another copy in the same one); None when there is none."""
    if not parsed.message_id:
        return None
    sender = email_key(parsed.from_addr)
    for message in found.received(parsed.message_id[:998]):
        if message.raw_message_id == raw_id:
            continue  # this very row (filed already): not a copy of itself
        if email_key(message.from_address) == sender and _same_time(message.sent_at, parsed.date):
            return message
    return None


def _same_time(stored: datetime | None, header: datetime | None) -> bool:
    """Whether two Date headers are the same instant (SQLite hands stored times back naive)."""
    if stored is None or header is None:
        return stored is None and header is None
    if stored.tzinfo is None:
        stored = stored.replace(tzinfo=UTC)
    return stored == header
