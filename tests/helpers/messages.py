"""Emails for the tests: to deliver (plain, HTML, authenticated, bounces) and to read once sent."""

from __future__ import annotations

import base64
import itertools
import re
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime

from webapp.db import utcnow

MARKER = "##- Please type your reply above this line -##"
AUTHSERV = "mx.example.com"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
HOSTILE_HTML = """<html><body>
<p>Hello <b>support</b>, see the picture:</p>
<script>alert('owned')</script>
<img src="x" onerror="alert('onerror')">
<div hx-get="/mailboxes/1/delete" hx-trigger="load">hx</div>
<div data-hx-post="/auth/logout" data-hx-trigger="load">data-hx</div>
<img src="https://tracker.example/pixel.gif?u=1" width="1" height="1">
<img src="cid:logo@test.example" alt="logo">
<a href="javascript:alert(1)">bad link</a> <a href="https://example.org/help">good link</a>
</body></html>"""

_ids = itertools.count(1)


def email(
    subject: str,
    sender: str = "alice@example.org",
    to: str = "support@example.com",
    body: str = "Hello,\nplease help.\n",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    cc: str | None = None,
    extra: str = "",
    date: datetime | None = None,
) -> bytes:
    """A small RFC 5322 message with CRLF line endings (Date: now unless `date` is given)."""
    message_id = message_id or f"<m{next(_ids)}.{abs(hash(subject)) % 10**8}@test.example>"
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        f"Date: {format_datetime(date or utcnow())}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    if cc:
        lines.append(f"Cc: {cc}")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


def verified(sender_domain: str = "example.org", authserv: str = AUTHSERV) -> str:
    """An Authentication-Results header of our receiving server: SPF and DKIM pass, aligned."""
    return (
        f"Authentication-Results: {authserv};\r\n spf=pass smtp.mailfrom=someone@{sender_domain};"
        f"\r\n dkim=pass header.d={sender_domain}; dmarc=pass header.from={sender_domain}"
    )


def failed(sender_domain: str = "example.org", authserv: str = AUTHSERV) -> str:
    return (
        f"Authentication-Results: {authserv}; spf=fail smtp.mailfrom=someone@{sender_domain};"
        f" dkim=fail header.d={sender_domain}; dmarc=fail header.from={sender_domain}"
    )


def html_email(subject: str, sender: str = "Hostile <evil@example.org>") -> bytes:
    """multipart/mixed: (related: alternative text+html, inline PNG) + a PDF attachment."""
    png = base64.b64encode(PNG).decode()
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    parts = [
        f"From: {sender}",
        "To: support@example.com",
        f"Subject: {subject}",
        "Message-ID: <html1@test.example>",
        f"Date: {format_datetime(utcnow())}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="mixed"',
        "",
        "--mixed",
        'Content-Type: multipart/related; boundary="rel"',
        "",
        "--rel",
        'Content-Type: multipart/alternative; boundary="alt"',
        "",
        "--alt",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Hello support, see the picture.",
        "--alt",
        "Content-Type: text/html; charset=utf-8",
        "",
        HOSTILE_HTML,
        "--alt--",
        "--rel",
        "Content-Type: image/png",
        "Content-ID: <logo@test.example>",
        "Content-Disposition: inline; filename=logo.png",
        "Content-Transfer-Encoding: base64",
        "",
        png,
        "--rel--",
        "--mixed",
        'Content-Type: application/pdf; name="invoice.pdf"',
        'Content-Disposition: attachment; filename="invoice.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        pdf,
        "--mixed--",
        "",
    ]
    return "\r\n".join(parts).encode()


def bounce(
    original_message_id: str,
    to: str,
    recipient: str = "nobody@example.org",
    part: str = "text/rfc822-headers",
    subject: str = "Undelivered Mail Returned to Sender",
) -> bytes:
    """A delivery status notification (RFC 3464) for one of our messages, without In-Reply-To."""
    original = (
        f"From: Support <{to}>\r\nTo: {recipient}\r\nSubject: Re: [#1] Printer jammed\r\n"
        f"Message-ID: {original_message_id}\r\n"
    )
    if part == "message/rfc822":
        original += "Content-Type: text/plain\r\n\r\nThe text of our mail.\r\n"
    lines = [
        "Return-Path: <>",
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>",
        f"To: {to}",
        f"Subject: {subject}",
        f"Message-ID: <dsn.{re.sub(r'[^A-Za-z0-9]', '', original_message_id)}@mx.example.net>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"',
        "",
        "--dsn",
        "Content-Type: text/plain",
        "",
        f"Your message to {recipient} could not be delivered.",
        "--dsn",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mx.example.net",
        "",
        f"Final-Recipient: rfc822; {recipient}",
        "Action: failed",
        "Status: 5.1.1",
        "--dsn",
        f"Content-Type: {part}",
        "",
        original.rstrip("\r\n"),
        "--dsn--",
        "",
    ]
    return "\r\n".join(lines).encode()


def parsed(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)


def text_body(msg: EmailMessage) -> str:
    """The plain text part with \\n line ends (a quoted-printable body keeps the wire's CRLF)."""
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")


def first_text_line(msg: EmailMessage) -> str:
    return text_body(msg).splitlines()[0]


def link_in(text: str) -> str:
    match = re.search(r"http://127\.0\.0\.1:5000/confirm/\S+", text)
    assert match, f"no confirmation link in {text!r}"
    return match.group(0)
