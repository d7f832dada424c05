"""Helpers for the fetch engine tests: mailboxes straight in the database, emails, results."""

from __future__ import annotations

import itertools
from email.utils import format_datetime

from sqlmodel import col, select

from webapp import crypto
from webapp.db import new_session, utcnow
from webapp.models import Case, Contact, FetchRun, Mailbox, Message, RawMessage

_ids = itertools.count(1)

PORTS = {"imaps": "imaps_port", "pop3s": "pop3s_port", "imap": "imap_port", "pop3": "pop3_port"}


def make_mailbox(env: dict, dovecot, user, protocol: str = "imaps", **fields) -> int:
    """A verified, set-up mailbox with fetching on, pointing at the test Dovecot."""
    crypto.configure([env["ENCRYPTION_KEY"]])
    with new_session(env["DATABASE_URL"]) as db:
        box = Mailbox(
            name=f"Box {user.email}",
            email_address=user.email,
            email_key=user.email.lower(),
            username=user.email,
            password_enc=crypto.encrypt(user.password),
            protocol=protocol,
            host="127.0.0.1",
            port=getattr(dovecot, PORTS[protocol]),
            folder="INBOX",
            setup_complete=True,
            verify_state="ok",
            enabled=True,
            fetching_enabled=True,
            fetching_since=utcnow(),
        )
        for name, value in fields.items():
            setattr(box, name, value)
        db.add(box)
        db.commit()
        return box.id


def update_mailbox(env: dict, mailbox_id: int, **fields) -> None:
    with new_session(env["DATABASE_URL"]) as db:
        box = db.get(Mailbox, mailbox_id)
        for name, value in fields.items():
            setattr(box, name, value)
        db.add(box)
        db.commit()


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
) -> bytes:
    """A small RFC 5322 message with CRLF line endings."""
    message_id = message_id or f"<m{next(_ids)}.{abs(hash(subject)) % 10**8}@test.example>"
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        f"Date: {format_datetime(utcnow())}",
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


def fetch(env: dict, mailbox_id: int) -> dict:
    """Run the fetch job's function in this process, as an RQ worker would."""
    from worker.jobs import fetch_mailbox

    return fetch_mailbox(mailbox_id)


def snapshot(env: dict, mailbox_id: int) -> dict:
    """What a fetch produced, independent of ids and times: compare two runs with it."""
    with new_session(env["DATABASE_URL"]) as db:
        cases = db.exec(
            select(Case).where(Case.mailbox_id == mailbox_id).order_by(col(Case.number))
        ).all()
        out = {"cases": [], "raw": {}}
        for case in cases:
            messages = db.exec(
                select(Message).where(Message.case_id == case.id).order_by(col(Message.id))
            ).all()
            out["cases"].append(
                (case.subject, case.requester_email, tuple(m.subject for m in messages))
            )
        rows = db.exec(select(RawMessage).where(RawMessage.mailbox_id == mailbox_id)).all()
        for row in rows:
            out["raw"][row.state] = out["raw"].get(row.state, 0) + 1
        return out


def counts(env: dict, mailbox_id: int) -> dict:
    with new_session(env["DATABASE_URL"]) as db:
        raws = db.exec(select(RawMessage).where(RawMessage.mailbox_id == mailbox_id)).all()
        cases = db.exec(select(Case).where(Case.mailbox_id == mailbox_id)).all()
        messages = db.exec(select(Message).where(Message.mailbox_id == mailbox_id)).all()
        return {
            "raw": len(raws),
            "cases": len(cases),
            "messages": len(messages),
            "shas": len({r.sha256 for r in raws if r.sha256}),
            "message_raw_ids": len({m.raw_message_id for m in messages}),
        }


def cases_by_subject(env: dict) -> dict[str, Case]:
    with new_session(env["DATABASE_URL"]) as db:
        return {c.subject: c for c in db.exec(select(Case)).all()}


def messages_of(env: dict, case_id: int) -> list[Message]:
    with new_session(env["DATABASE_URL"]) as db:
        return list(
            db.exec(
                select(Message).where(Message.case_id == case_id).order_by(col(Message.id))
            ).all()
        )


def contacts(env: dict) -> list[Contact]:
    with new_session(env["DATABASE_URL"]) as db:
        return list(db.exec(select(Contact)).all())


def runs(env: dict, mailbox_id: int) -> list[FetchRun]:
    with new_session(env["DATABASE_URL"]) as db:
        return list(
            db.exec(
                select(FetchRun).where(FetchRun.mailbox_id == mailbox_id).order_by(col(FetchRun.id))
            ).all()
        )


def raws(env: dict, mailbox_id: int) -> list[RawMessage]:
    with new_session(env["DATABASE_URL"]) as db:
        return list(
            db.exec(
                select(RawMessage)
                .where(RawMessage.mailbox_id == mailbox_id)
                .order_by(col(RawMessage.id))
            ).all()
        )


def mailbox(env: dict, mailbox_id: int) -> Mailbox:
    with new_session(env["DATABASE_URL"]) as db:
        return db.get(Mailbox, mailbox_id)
