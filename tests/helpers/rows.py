"""Rows in the test database: what a step stored, read back; raw rows and bulk cases written directly."""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta

from sqlalchemy import insert
from sqlmodel import col, select

from webapp.db import get_engine, new_session, utcnow
from webapp.models import (
    Case,
    Contact,
    FetchRun,
    HeldMessage,
    Mailbox,
    Message,
    OutboxMessage,
    RawMessage,
    RawMessageBody,
)

_uids = itertools.count(1)


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


def mailbox_of(app, box_id) -> Mailbox:
    with new_session(app.config["SETTINGS"].database_url) as db:
        return db.get(Mailbox, box_id)


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


def outbox_rows(env: dict, **where) -> list[OutboxMessage]:
    with new_session(env["DATABASE_URL"]) as db:
        query = select(OutboxMessage).order_by(col(OutboxMessage.id))
        for name, value in where.items():
            query = query.where(getattr(OutboxMessage, name) == value)
        return list(db.exec(query).all())


def store(db, mailbox: Mailbox, raw: bytes, backlog: bool = False) -> int:
    """A raw message row with its bytes, as a fetch stores it; returns its id."""
    row = RawMessage(
        mailbox_id=mailbox.id,
        folder="INBOX",
        uidvalidity=1,
        uid=next(_uids),
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        backlog=backlog,
    )
    db.add(row)
    db.flush()
    db.add(RawMessageBody(raw_message_id=row.id, data=raw))
    db.commit()
    return row.id


def bulk_cases(database_url: str, count: int, mailbox_id: int | None = None) -> None:
    """count cases, one contact each tenth, one message each, attachments on the last ones."""
    start = utcnow() - timedelta(days=30)
    engine = get_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            insert(Contact.__table__),
            [
                {
                    "email": f"c{i}@bulk.example",
                    "email_key": f"c{i}@bulk.example",
                    "name": f"Contact {i}",
                    "created_at": start,
                    "updated_at": start,
                }
                for i in range(count // 10)
            ],
        )
        conn.execute(
            insert(Case.__table__),
            [
                {
                    "number": n,
                    "subject": f"Bulk case {n}",
                    "status": "open" if n % 3 else "closed",
                    "contact_id": (n % (count // 10)) + 1,
                    "requester_email": f"c{n}@bulk.example",
                    "mailbox_id": mailbox_id,
                    "created_at": start + timedelta(seconds=n),
                    "updated_at": start + timedelta(seconds=n),
                }
                for n in range(1, count + 1)
            ],
        )
        conn.execute(
            insert(Message.__table__),
            [
                {
                    "case_id": n,
                    "direction": "in",
                    "opened_case": True,
                    "from_address": f"c{n}@bulk.example",
                    "from_name": "",
                    "to_addresses": "",
                    "cc_addresses": "",
                    "subject": f"Bulk case {n}",
                    "text": f"Body {n}",
                    "full_text": f"Body {n}",
                    "message_id": f"<bulk{n}@x>",
                    "in_reply_to": "",
                    "references_ids": "",
                    "backlog": False,
                    "parse_notes": "",
                    "received_at": start + timedelta(seconds=n),
                    "created_at": start + timedelta(seconds=n),
                }
                for n in range(1, count + 1)
            ],
        )
