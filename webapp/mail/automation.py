"""Is a message written by a machine? The RFC 3834 loop guard.

We must never send an automatic reply (acknowledgement, notification) to a message
that was itself sent automatically: two auto-responders answering each other is a
mail loop. `automation_reason` says why a message looks automated, or None.
"""

from __future__ import annotations

import re
from collections.abc import Set

from webapp.mail.parse import ParsedMessage

_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply", "auto-reply"}
_AUTOMATION_HEADERS = {
    "x-auto-response-suppress": "X-Auto-Response-Suppress",
    "x-autoreply": "X-Autoreply",
    "x-autorespond": "X-Autorespond",
}
_MACHINE_LOCALPART = re.compile(
    r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?)([-+_.=].*)?$",
    re.I,
)


def automation_reason(msg: ParsedMessage, own_addresses: Set[str] = frozenset()) -> str | None:
    """A short reason why `msg` is automated (never auto-reply to it), or None."""
    headers = msg.headers
    own = {address.strip().lower() for address in own_addresses}
    sender = msg.from_addr_normalized or msg.from_addr.lower()
    if sender and sender in own:
        return f"sent by our own address {msg.from_addr}"
    if msg.reply_to and msg.reply_to.lower() in own:
        return f"Reply-To is our own address {msg.reply_to}"
    for value in _values(headers, "auto-submitted"):
        if value.split(";", 1)[0].strip().lower() != "no":
            return f"Auto-Submitted: {value}"
    for name, label in _AUTOMATION_HEADERS.items():
        if name in headers:
            return f"{label} present"
    if any("vacation" in value.lower() for value in _values(headers, "x-apple-action")):
        return "X-Apple-Action: VACATION (iCloud auto-reply)"
    for value in _values(headers, "precedence"):
        if value.strip().lower() in _BULK_PRECEDENCE:
            return f"Precedence: {value.strip()}"
    if _values(headers, "list-id"):
        return "List-Id present (mailing list)"
    if _values(headers, "list-unsubscribe"):
        return "List-Unsubscribe present (bulk mail)"
    if any(_is_null_path(value) for value in _values(headers, "return-path")):
        return "null Return-Path <> (bounce or auto-reply)"
    if msg.is_report:  # delivery-status, disposition-notification, feedback-report, ...
        return f"multipart/report ({msg.report_type or 'no report-type'})"
    localpart = sender.rsplit("@", 1)[0] if sender else ""
    if localpart and _MACHINE_LOCALPART.match(localpart):
        return f"sender {msg.from_addr} is a machine address"
    return None


def _values(headers: dict[str, str], name: str) -> list[str]:
    """A header's values (ParsedMessage joins repeated headers with newlines)."""
    return [value for value in headers.get(name, "").split("\n") if value.strip()]


def _is_null_path(value: str) -> bool:
    return re.sub(r"\s+", "", value) == "<>"
