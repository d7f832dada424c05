"""Helpers for the Email Filtering tests: held rows, messages by subject, reports and bounces."""

from __future__ import annotations

import re

from sqlmodel import col, select

from tests.fetch_support import email, fetch
from webapp.db import new_session
from webapp.models import Case, Contact, HeldMessage, Message, RawMessage

AUTHSERV = "mx.example.com"


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


def deliver_and_fetch(env, box: int, user, subject: str, **kwargs) -> RawMessage:
    """Deliver one email to the mailbox, fetch it, return its raw row."""
    kwargs.setdefault("to", user.email)
    user.deliver(email(subject, **kwargs))
    result = fetch(env, box)
    assert result["state"] == "ok", result
    return raw_by_subject(env, subject)


def raw_by_subject(env, subject: str) -> RawMessage:
    with new_session(env["DATABASE_URL"]) as db:
        rows = db.exec(
            select(RawMessage)
            .where(RawMessage.header_subject == subject)
            .order_by(col(RawMessage.id).desc())
        ).all()
        assert rows, f"no raw message {subject!r}"
        return rows[0]


def held_of(env, raw_id: int) -> HeldMessage | None:
    with new_session(env["DATABASE_URL"]) as db:
        return db.exec(select(HeldMessage).where(HeldMessage.raw_message_id == raw_id)).first()


def held_rows(env) -> list[HeldMessage]:
    with new_session(env["DATABASE_URL"]) as db:
        return list(db.exec(select(HeldMessage).order_by(col(HeldMessage.id))).all())


def case_of_raw(env, raw_id: int) -> Case | None:
    with new_session(env["DATABASE_URL"]) as db:
        message = db.exec(select(Message).where(Message.raw_message_id == raw_id)).first()
        return db.get(Case, message.case_id) if message else None


def all_cases(env) -> list[Case]:
    with new_session(env["DATABASE_URL"]) as db:
        return list(db.exec(select(Case).order_by(col(Case.id))).all())


def contact_keys(env) -> list[str]:
    with new_session(env["DATABASE_URL"]) as db:
        return sorted(db.exec(select(Contact.email_key)).all())


def contact(env, key: str) -> Contact | None:
    with new_session(env["DATABASE_URL"]) as db:
        return db.exec(select(Contact).where(Contact.email_key == key)).first()


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


def link_in(text: str) -> str:
    match = re.search(r"http://127\.0\.0\.1:5000/confirm/\S+", text)
    assert match, f"no confirmation link in {text!r}"
    return match.group(0)
