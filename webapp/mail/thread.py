"""Threads: the case token in subjects, and the Message-IDs a message answers.

A reply finds its case by the Message-IDs in its In-Reply-To and References headers,
or else by the [#123] token we put in the subjects of our mail. Both are read and
written here, once, for incoming mail and for the mail we send.
"""

from __future__ import annotations

import re

from webapp.mail.headers import one_line

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
