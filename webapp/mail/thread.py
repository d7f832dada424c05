"""Threads: the case token in subjects, and the Message-IDs a message answers.

A reply finds its case by the Message-IDs in its In-Reply-To and References headers,
or else by the [#123] token we put in the subjects of our mail. Both are read and
written here, once, for incoming mail and for the mail we send.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from webapp.mail.headers import one_line

MAX_IDS = 100  # Message-IDs looked up for one incoming message
MAX_ID_LENGTH = 998  # RFC 5322's line limit: a longer id is cut to it
MAX_REFERENCES = 20  # Message-IDs in the References of a message we send
_MSG_ID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]+$")  # printable ASCII without < and >
CASE_TOKEN = re.compile(r"\[#(\d{1,9})\]")
_LEADING_TOKEN = re.compile(r"^\s*\[#\d{1,9}\]\s*")
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|vs|antw|odp|ynt)\s*(?:\[\d+\])?\s*:\s*", re.I)


# -- case tokens in subjects -----------------------------------------------------------


def case_token(number: int) -> str:
    """[#123]: the case number as it appears in subjects."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"a case number is a positive integer, not {number!r}")
    return f"[#{number}]"


def subject_with_token(subject: str, number: int) -> str:
    """The subject with this case's token once, after a single "Re:" when it is a reply."""
    token = case_token(number)
    rest, reply = one_line(subject).strip(), False
    while True:
        if match := _REPLY_PREFIX.match(rest):
            reply = True
        elif not (match := _LEADING_TOKEN.match(rest)):
            break
        rest = rest[match.end() :]
    rest = " ".join(rest.replace(token, " ").split())
    return " ".join(part for part in ("Re:" if reply else "", token, rest) if part)


def find_case_token(subject: str | None) -> int | None:
    """The case number of the first [#123] token in the subject, or None."""
    match = CASE_TOKEN.search(subject or "")
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


def case_numbers(subject: str | None) -> list[int]:
    """The numbers of every [#123] token in the subject, in order (a [#0] too)."""
    return [int(match.group(1)) for match in CASE_TOKEN.finditer(subject or "")]


# -- the Message-IDs an incoming message answers -----------------------------------------


class Threaded(Protocol):
    """A parsed message's thread headers (ParsedMessage has them): ids as <id>, in header order."""

    in_reply_to: list[str]
    references: list[str]


def nearest_first(message: Threaded) -> list[str]:
    """In-Reply-To, then References from the last: the message's parents, nearest first."""
    return [*message.in_reply_to, *reversed(message.references)]


def capped_ids(ids: Iterable[str]) -> list[str]:
    """The ids without repeats, each cut to 998 characters, at most 100 of them."""
    return [i[:MAX_ID_LENGTH] for i in dict.fromkeys(ids)][:MAX_IDS]


def answered_ids(message: Threaded) -> list[str]:
    """The Message-IDs a message answers, nearest first: capped_ids(nearest_first(message))."""
    return capped_ids(nearest_first(message))


def confirmation_ids(message: Threaded) -> list[str]:
    """In-Reply-To, then References in header order, as written, at most 100 (no dedupe, no cut)."""
    return [*message.in_reply_to, *message.references][:MAX_IDS]


# -- the thread headers of a message we send ---------------------------------------------


def header_ids(value: str) -> list[str]:
    """The Message-IDs in a header value, each as <id>; malformed ones are dropped."""
    value = one_line(value)
    found = re.findall(r"<([^<>]*)>", value) or value.split()
    return [f"<{i.strip()}>" for i in found if _MSG_ID.match(i.strip())]


def reply_references(references: Iterable[str], message_id: str | None) -> list[str]:
    """What a reply refers to: the parent's References, then the parent's own Message-ID."""
    return [*references, *([message_id] if message_id else [])]


def reference_chain(references: Iterable[str], parent: str | None) -> list[str]:
    """The References header of a reply: every id once, the parent last, at most 20."""
    chain: list[str] = []
    for value in [*references, parent or ""]:
        chain += [i for i in header_ids(value) if i not in chain]
    if parent and chain[-1] != parent:
        chain = [i for i in chain if i != parent] + [parent]
    if len(chain) > MAX_REFERENCES:  # RFC 5322: keep the thread's root and the recent tail
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    return chain
