"""Outgoing messages: build the EmailMessage we send, with our headers and the thread.

Every header value is put on one line (CR/LF and other control characters become a
space, so no header can be injected); In-Reply-To and References hold only well-formed
Message-IDs; the End of Message Marker goes on top of the text and the HTML.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid

from webapp.mail.headers import one_line
from webapp.mail.thread import header_ids, reference_chain

AUTO_SUBMITTED = ("auto-replied", "auto-generated")
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
_ID_HEADERS = ("message-id", "in-reply-to", "references")
_RESERVED = {
    "from", "to", "cc", "bcc", "resent-bcc", "subject", "date", "mime-version", "content-type",
    "content-transfer-encoding", "auto-submitted", "x-auto-response-suppress", *_ID_HEADERS,
}  # fmt: skip


class _Policy(EmailPolicy):
    """email.policy.SMTP with 7-bit bodies; Message-ID headers fold only between ids."""

    def fold(self, name: str, value: str) -> str:
        if name.lower() in _ID_HEADERS:
            return f"{name}: " + f"{self.linesep} ".join(str(value).split()) + self.linesep
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in _ID_HEADERS:
            return self.fold(name, value).encode("ascii", "surrogateescape")
        return super().fold_binary(name, value)


POLICY = _Policy(linesep="\r\n", cte_type="7bit")


def build_message(
    *, from_addr: str, from_name: str, to_addr: str, to_name: str, subject: str, text: str,
    html: str | None = None, message_id_domain: str, in_reply_to: str | None = None,
    references: Iterable[str] = (), auto_submitted: str | None = None, marker: str | None = None,
    extra_headers: Mapping[str, str] | None = None, cc: Iterable[str] = (),
) -> EmailMessage:  # fmt: skip
    """A ready-to-send message; CR/LF in any header value becomes a space (no injection).

    `cc`: bare addresses for the Cc header (reply-all); the envelope takes them from it."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(display_name=one_line(from_name or ""), addr_spec=_addr(from_addr))
    msg["To"] = Address(display_name=one_line(to_name or ""), addr_spec=_addr(to_addr))
    copies = [Address(addr_spec=_addr(a)) for a in cc if _addr(a)]
    if copies:
        msg["Cc"] = copies
    msg["Subject"] = one_line(subject)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = new_message_id(message_id_domain)
    parent = next(iter(header_ids(in_reply_to or "")), None)
    if parent:
        msg["In-Reply-To"] = parent
    chain = reference_chain(references, parent)
    if chain:
        msg["References"] = " ".join(chain)
    if auto_submitted:
        if auto_submitted not in AUTO_SUBMITTED:
            raise ValueError(f"auto_submitted must be one of {AUTO_SUBMITTED}")
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"  # Exchange: no out-of-office answers to us
    for name, value in (extra_headers or {}).items():
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED:
            raise ValueError(f"{name!r} cannot be set as an extra header")
        msg[name] = one_line(value)
    marker = one_line(marker or "").strip()
    msg.set_content(f"{marker}\n\n{text}" if marker else text)
    if html is not None:
        msg.add_alternative(_html_with_marker(html, marker), subtype="html")
    return msg


def _addr(value: str) -> str:
    return one_line(value).strip()


def new_message_id(domain: str) -> str:
    """A new, unique <id@domain> Message-ID; ValueError if domain is not a domain."""
    return make_msgid(domain=_domain(domain))


def _domain(value: str) -> str:
    domain = one_line(value).strip().strip(".")
    if not domain or " " in domain:
        raise ValueError(f"{value!r} is not a domain for Message-IDs")
    return domain.encode("idna").decode("ascii")


def _html_with_marker(html: str, marker: str) -> str:
    if not marker:
        return html
    paragraph = f'<p style="color:#888888">{html_lib.escape(marker)}</p>'
    body = re.search(r"<body[^>]*>", html, re.I)
    if body:
        return html[: body.end()] + paragraph + html[body.end() :]
    return paragraph + html
