"""The writes of filing a message: its contact, a new case and its number, the message row,
the participants. Nothing here decides where a message goes (that is route.py).

Each function writes in the caller's transaction (flushed, not committed) and notes what
it wrote in the lookups, so that a later message of the same batch finds it.
"""

from __future__ import annotations

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from webapp.db import insert_ignore, utcnow
from webapp.mail.parse import ParsedMessage
from webapp.mail.reply import extract_reply
from webapp.models import (
    Case,
    Contact,
    Counter,
    Mailbox,
    Message,
    MessageMailbox,
    RawMessage,
)
from webapp.models.case import CASE_NUMBERS
from webapp.models.contact import email_key
from webapp.services.ingest.copies import Received
from webapp.services.ingest.lookups import Lookups

_INSERT_MESSAGE = insert(Message.__table__).returning(Message.__table__.c.id)


def find_contact(
    db: Session, found: Lookups, parsed: ParsedMessage, create: bool
) -> Contact | None:
    """The sender's contact by lowercased address; made once, even by concurrent workers."""
    key = email_key(parsed.from_addr)
    if not key or len(key) > 320:
        return None
    contact = found.contact(key)  # or the contact it was merged into (services/contacts.py)
    if contact is None and create:
        now = utcnow()
        made = insert_ignore(db, Contact).values(
            email=parsed.from_addr.strip(),
            email_key=key,
            name=(parsed.from_name or "")[:200],
            created_at=now,
            updated_at=now,
        )
        contact = db.exec(made.returning(Contact)).scalars().first()
        if contact is None:  # a concurrent worker made it first
            contact = db.exec(select(Contact).where(Contact.email_key == key)).first()
        found.noted_contact(key, contact)
    return contact


def next_case_number(db: Session) -> int:
    """A new case number, unique on both databases; on PostgreSQL a rolled-back batch may
    leave a gap (see open_case)."""
    if db.get_bind().dialect.name == "postgresql":
        return int(db.exec(select(CASE_NUMBERS.next_value())).one())
    table = Counter.__table__
    bump = (
        update(table)
        .where(table.c.name == "case")
        .values(value=table.c.value + 1)
        .returning(table.c.value)
    )
    number = db.exec(bump).scalar()
    if number is None:  # a database not made by the migrations: start after the highest case
        highest = db.exec(select(Case.number).order_by(col(Case.number).desc())).first() or 0
        db.exec(insert_ignore(db, table).values(name="case", value=highest))
        number = db.exec(bump).scalar()
    return int(number)


def open_case(
    db: Session, found: Lookups, mailbox: Mailbox, parsed: ParsedMessage, contact: Contact | None
) -> Case:
    """A new case with the next number (flushed, not committed).

    The number: on PostgreSQL from the sequence CASE_NUMBERS, in the INSERT itself.
    nextval is not transactional: it locks nothing until the transaction ends, so two
    workers filing at once never wait for each other's number, and a batch rolled back
    leaves a gap in the numbers. On SQLite, the "case" counter row, bumped with one
    UPDATE … RETURNING: its lock is the database's single write lock, which a filing
    transaction holds anyway, so a sequence would gain nothing there (and numbers have
    no gaps). One counter per mailbox range was the other way: no gaps on PostgreSQL
    either, but each range's row still serialises the workers filing that mailbox,
    which is exactly the one-big-mailbox case.
    """
    now = utcnow()
    values = dict(
        subject=(parsed.subject or "(no subject)")[:1000],
        status="open",
        contact_id=contact.id if contact else None,
        requester_email=email_key(parsed.from_addr)[:320],
        mailbox_id=mailbox.id,
        assignee_id=None,
        created_at=now,
        updated_at=now,
    )
    if db.get_bind().dialect.name == "postgresql":  # one round trip: the number in the INSERT
        numbered = db.exec(  # "orm": one row with these values, not a bulk INSERT
            _NUMBERED_INSERT, params=values, execution_options={"dml_strategy": "orm"}
        )
        case = numbered.scalars().one()
    else:
        insert_case = insert(Case).values(number=next_case_number(db), **values)
        case = db.exec(insert_case.returning(Case)).scalars().one()
    found.noted_case(case)
    return case


def _numbered_insert():
    """INSERT INTO case (number, …) VALUES (nextval('case_number_seq'), …) RETURNING *
    (built once; executed with the case's values as parameters)."""
    table = Case.__table__
    names = [c.name for c in table.c if c.name not in ("id", "number")]
    values = {n: bindparam(n, type_=table.c[n].type) for n in names}
    return insert(Case).values(number=CASE_NUMBERS.next_value(), **values).returning(Case)


_NUMBERED_INSERT = _numbered_insert()


def add_message(
    db: Session,
    found: Lookups,
    mailbox: Mailbox,
    raw: RawMessage,
    parsed: ParsedMessage,
    case: Case,
    contact: Contact | None,
    opened: bool,
    automated: str | None,
) -> Message:
    """Write the message's row with one INSERT (no ORM object); the Message it wrote, not
    added to the session."""
    now = utcnow()
    values = dict(
        case_id=case.id,
        raw_message_id=raw.id,
        mailbox_id=mailbox.id,
        contact_id=contact.id if contact else None,
        direction="in",
        opened_case=opened,
        from_address=parsed.from_addr[:320],
        from_name=(parsed.from_name or "")[:200],
        to_addresses=", ".join(parsed.to),
        cc_addresses=", ".join(parsed.cc),
        sent_at=parsed.date,
        subject=(parsed.subject or "")[:1000],
        text=(
            parsed.reply_text
            if parsed.reply_text is not None
            else extract_reply(parsed.text, mailbox.end_of_message_marker)
        ),
        full_text=parsed.text,
        html=parsed.html,
        message_id=parsed.message_id[:998] if parsed.message_id else None,
        in_reply_to=" ".join(parsed.in_reply_to),
        references_ids=" ".join(parsed.references),
        automated=automated[:200] if automated else None,
        backlog=raw.backlog,
        parse_notes="\n".join(parsed.defects)[:4000],
        received_at=now,
        created_at=now,
    )
    message_id = db.exec(_INSERT_MESSAGE, params=values).scalar_one()
    found.noted_message(values["message_id"], case.id)
    found.noted_received(
        values["message_id"],
        Received(message_id, case.id, mailbox.id, raw.id, values["from_address"], parsed.date),
    )
    return Message.model_construct(id=message_id, **values)


def add_participants(found: Lookups, case_id: int, roles: dict[str, str]) -> None:
    """The addresses (lowercased) that take part in the case, with their role."""
    rows = [
        {"case_id": case_id, "email_key": key, "role": role}
        for key, role in roles.items()
        if len(key) <= 320
    ]
    found.add_participants(rows)


def add_mailbox(db: Session, message_id: int, mailbox_id: int, raw_message_id: int) -> None:
    """Note that a message filed before also came through this mailbox of ours; once per
    mailbox, whatever the number of copies or of workers filing them."""
    db.exec(
        insert_ignore(db, MessageMailbox.__table__).values(
            message_id=message_id,
            mailbox_id=mailbox_id,
            raw_message_id=raw_message_id,
            created_at=utcnow(),
        )
    )
