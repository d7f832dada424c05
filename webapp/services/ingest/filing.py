"""File a parsed email: a comment on the case it answers, or a new case; and its contact.

A reply is matched by In-Reply-To/References to a message we hold, or by the case
token ([#123]) in the subject only when the sender already takes part in that case:
a stranger (or a forged From of a stranger) quoting someone else's case number
opens a new case instead of writing into theirs.
"""

from __future__ import annotations

import re

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from webapp.db import utcnow
from webapp.mail.automation import automation_reason
from webapp.mail.parse import ParsedMessage
from webapp.mail.reply import extract_reply
from webapp.models import (
    Attachment,
    Case,
    Contact,
    Counter,
    Mailbox,
    Message,
    RawMessage,
)
from webapp.models.contact import email_key
from webapp.services.fetching.leases import insert_ignore
from webapp.services.ingest import screening as intake
from webapp.services.ingest.lookups import lookups
from webapp.services.outgoing import notify

_INSERT_MESSAGE = insert(Message.__table__).returning(Message.__table__.c.id)
_INSERT_ATTACHMENT = insert(Attachment.__table__)
CASE_TOKEN = re.compile(r"\[#(\d{1,9})\]")
KEPT_ATTACHMENTS = 5  # bytes of the first five attachments, when the mailbox keeps them
NOT_KEPT_BEYOND_LIMIT = f"only the first {KEPT_ATTACHMENTS} attachments of a message are kept"
NOT_KEPT_ATTACHMENTS_OFF = "this mailbox does not keep attachments (Attachments is off)"


def file_message(
    db: Session,
    mailbox: Mailbox,
    raw: RawMessage,
    parsed: ParsedMessage,
    own: set[str] | None = None,
) -> str | None:
    """Add the message to a case (flushed, not committed); the reason when it is ignored instead.

    `own` is own_addresses(db), when the caller computed it once for many messages.
    """
    own = own_addresses(db) if own is None else own
    sender = email_key(parsed.from_addr)
    case = thread_case(db, parsed, sender)
    # Email Filtering: services/ingest/screening.py
    screened = intake.screen(db, mailbox, raw, parsed, case, own=own)
    if screened.reason:
        return screened.reason  # held or filtered: recorded as a HeldMessage
    case = screened.case
    if case is None and not mailbox.allow_new_case:
        return "not a reply to a known case, and Allow New Case is off for this mailbox"
    create = mailbox.create_new_contact and sender not in own and screened.create_contact
    contact = find_contact(db, parsed, create=create)
    opened = case is None
    if case is None:
        case = open_case(db, mailbox, parsed, contact)
    values = _message(mailbox, raw, parsed, case, contact, opened, automation_reason(parsed, own))
    message_id = db.exec(_INSERT_MESSAGE, params=values).scalar_one()
    lookups(db).noted_message(values["message_id"], case.id)
    _attachments(db, mailbox, message_id, parsed)
    roles = {sender: "requester" if opened else "sender"}
    if opened:
        roles.update(
            {email_key(a): "cc" for a in [*parsed.to, *parsed.cc] if email_key(a) not in roles}
        )
    _add_participants(db, case.id, {k: v for k, v in roles.items() if k and k not in own})
    if opened:  # in this transaction: the case and its acknowledgement commit together
        message = Message.model_construct(id=message_id, **values)  # not added: it is written
        notify.acknowledge_new_case(db, mailbox, case, message)
    else:  # a new case was created with this time already
        lookups(db).touch_case(case.id)
    return None


def own_addresses(db: Session) -> set[str]:
    """Our mailboxes' addresses: mail from them is a loop, never a requester."""
    return set(db.exec(select(Mailbox.email_key)).all())


def thread_ids(parsed: ParsedMessage) -> list[str]:
    """The Message-IDs a message answers, nearest first: In-Reply-To, then References."""
    ids = [*parsed.in_reply_to, *reversed(parsed.references)]
    return [i[:998] for i in dict.fromkeys(ids)][:100]


def thread_case(db: Session, parsed: ParsedMessage, sender: str) -> Case | None:
    """The case this message answers, or None for a new thread."""
    ids = thread_ids(parsed)
    if ids:
        found = lookups(db)
        by_id = found.message_cases(ids)
        for message_id in ids:
            if message_id in by_id:
                return found.case(by_id[message_id])
    for match in CASE_TOKEN.finditer(parsed.subject or ""):
        case = db.exec(select(Case).where(Case.number == int(match.group(1)))).first()
        if case is not None and sender and lookups(db).participant(case.id, sender):
            return case
    return None


def find_contact(db: Session, parsed: ParsedMessage, create: bool) -> Contact | None:
    """The sender's contact by lowercased address; made once, even by concurrent workers."""
    key = email_key(parsed.from_addr)
    if not key or len(key) > 320:
        return None
    found = lookups(db)
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
    """Bump the "case" counter in one UPDATE … RETURNING: unique and increasing on both databases."""
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
    db: Session, mailbox: Mailbox, parsed: ParsedMessage, contact: Contact | None
) -> Case:
    """A new case numbered from the "case" counter (flushed, not committed)."""
    now = utcnow()
    values = dict(
        subject=(parsed.subject or "(no subject)")[:1000],
        status="open",
        contact_id=contact.id if contact else None,
        requester_email=email_key(parsed.from_addr)[:320],
        mailbox_id=mailbox.id,
        created_at=now,
        updated_at=now,
    )
    case = None
    if db.get_bind().dialect.name == "postgresql":  # one round trip instead of two
        numbered = db.exec(  # "orm": one row with these values, not a bulk INSERT
            _NUMBERED_INSERT, params=values, execution_options={"dml_strategy": "orm"}
        )
        case = numbered.scalars().first()  # None: no counter row
    if case is None:
        insert_case = insert(Case).values(number=next_case_number(db), **values)
        case = db.exec(insert_case.returning(Case)).scalars().one()
    lookups(db).noted_case(case)
    return case


def _numbered_insert():
    """WITH bumped AS (UPDATE counter … RETURNING value) INSERT INTO case … SELECT … FROM
    bumped RETURNING *: the counter and the case in one PostgreSQL statement (built once;
    executed with the case's values as parameters)."""
    table, counter = Case.__table__, Counter.__table__
    bumped = (
        update(counter)
        .where(counter.c.name == "case")
        .values(value=counter.c.value + 1)
        .returning(counter.c.value)
        .cte("bumped")
    )
    names = [c.name for c in table.c if c.name not in ("id", "number")]
    row = select(bumped.c.value, *[bindparam(n, type_=table.c[n].type) for n in names])
    return insert(Case).from_select(["number", *names], row).returning(Case)


_NUMBERED_INSERT = _numbered_insert()


def _message(
    mailbox: Mailbox,
    raw: RawMessage,
    parsed: ParsedMessage,
    case: Case,
    contact: Contact | None,
    opened: bool,
    automated: str | None,
) -> dict:
    """The columns of the message's row (written with one INSERT, without an ORM object)."""
    now = utcnow()
    return dict(
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


def attachment_verdicts(mailbox: Mailbox, attachments: list) -> list[str | None]:
    """Per attachment, None when its bytes are kept, else why not.

    The first KEPT_ATTACHMENTS parts with Content-Disposition: attachment, in MIME order,
    are kept when the mailbox keeps attachments; inline images do not count and stay
    viewable in the message; nothing over the per-attachment size limit is kept; with
    Attachments off nothing is."""
    limit = mailbox.max_attachment_bytes or 0
    counted, verdicts = 0, []
    for item in attachments:
        if limit and item.size > limit:
            verdicts.append(f"larger than the {mailbox.max_attachment_mb} MB limit per attachment")
            continue
        if not mailbox.keep_attachments:
            verdicts.append(NOT_KEPT_ATTACHMENTS_OFF)
            continue
        if item.inline:
            verdicts.append(None)
            continue
        counted += 1
        if counted > KEPT_ATTACHMENTS:
            verdicts.append(NOT_KEPT_BEYOND_LIMIT)
        else:
            verdicts.append(None)
    return verdicts


def _attachments(db: Session, mailbox: Mailbox, message_id: int, parsed: ParsedMessage) -> None:
    verdicts = attachment_verdicts(mailbox, parsed.attachments)
    rows = [
        dict(
            message_id=message_id,
            filename=item.filename[:255],
            content_type=item.content_type[:255],
            size=item.size,
            content_id=item.content_id[:998] if item.content_id else None,
            inline=item.inline,
            data=item.data if reason is None else None,
            not_kept_reason=reason,
        )
        for item, reason in zip(parsed.attachments, verdicts, strict=True)
    ]
    if rows:  # one statement (executemany) for all of them
        db.exec(_INSERT_ATTACHMENT, params=rows)


def _add_participants(db: Session, case_id: int, roles: dict[str, str]) -> None:
    rows = [
        {"case_id": case_id, "email_key": key, "role": role}
        for key, role in roles.items()
        if len(key) <= 320
    ]
    lookups(db).add_participants(rows)
