"""Contacts: the list with search and pages, renaming, and merging duplicates.

Merging keeps one contact: the other's cases and messages move to it, the cases it
took part in accept the kept address too, and the other address stays as an alias
(ContactAlias), so its next mail finds the kept contact instead of making a new one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, update
from sqlmodel import Session, col, select

from webapp.db import insert_ignore, natural_order, utcnow
from webapp.models import Case, CaseParticipant, Contact, Message
from webapp.models.contact import email_key
from webapp.models.intake import ContactAlias

PER_PAGE = 50


class ContactError(Exception):
    """The change cannot be made; the message says why, for the admin."""


@dataclass
class ContactRow:
    contact: Contact
    cases: int


@dataclass
class ContactPage:
    rows: list[ContactRow]
    total: int
    page: int
    pages: int


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def list_contacts(
    db: Session, query: str = "", page: int = 1, per_page: int = PER_PAGE
) -> ContactPage:
    """Contacts whose name or address contains `query`, by name, with their case counts."""
    where = []
    query = query.strip()[:200]
    if query:
        pattern = _like(query)
        where.append(
            or_(
                func.lower(Contact.name).like(pattern, escape="\\"),
                col(Contact.email_key).like(pattern, escape="\\"),
            )
        )
    total = int(db.exec(select(func.count()).select_from(Contact).where(*where)).one())
    pages = max(1, math.ceil(total / per_page))
    cases = select(func.count(Case.id)).where(Case.contact_id == Contact.id).scalar_subquery()
    rows = db.exec(
        select(Contact, cases)
        .where(*where)
        .order_by(
            func.lower(Contact.name) == "", *natural_order(Contact.name), col(Contact.email_key)
        )
        .offset((max(page, 1) - 1) * per_page)
        .limit(per_page)
    ).all()
    return ContactPage([ContactRow(c, n) for c, n in rows], total, max(page, 1), pages)


def rename(db: Session, contact_id: int, name: str) -> Contact:
    """Set a contact's name (blank allowed: the address is shown instead); commits."""
    contact = db.get(Contact, contact_id)
    if contact is None:
        raise ContactError("This contact no longer exists.")
    name = " ".join(name.split())
    if len(name) > 200:
        raise ContactError("A name has at most 200 characters.")
    contact.name, contact.updated_at = name, utcnow()
    db.add(contact)
    db.commit()
    return contact


def aliases(db: Session, contact_id: int) -> list[str]:
    query = select(ContactAlias.email_key).where(ContactAlias.contact_id == contact_id)
    return list(db.exec(query.order_by(col(ContactAlias.email_key))).all())


def cases_of(db: Session, contact_id: int, limit: int = 50) -> list[Case]:
    query = select(Case).where(Case.contact_id == contact_id).order_by(col(Case.updated_at).desc())
    return list(db.exec(query.limit(limit)).all())


def find(db: Session, text: str) -> Contact | None:
    """A contact by its id, its address or one of its aliases."""
    text = text.strip()
    if text.isdigit():
        return db.get(Contact, int(text))
    key = email_key(text)
    contact = db.exec(select(Contact).where(Contact.email_key == key)).first()
    if contact is None:
        alias = db.exec(select(ContactAlias).where(ContactAlias.email_key == key)).first()
        contact = db.get(Contact, alias.contact_id) if alias else None
    return contact


def duplicates(db: Session, contact: Contact, limit: int = 10) -> list[Contact]:
    """Likely duplicates: the same name, or the same mailbox name at another domain."""
    local = contact.email_key.rsplit("@", 1)[0]
    conditions = [col(Contact.email_key).like(_like(local + "@"), escape="\\")]
    if contact.name.strip():
        conditions.append(func.lower(Contact.name) == contact.name.strip().lower())
    query = select(Contact).where(Contact.id != contact.id, or_(*conditions))
    return list(db.exec(query.order_by(col(Contact.email_key)).limit(limit)).all())


@dataclass
class MergeSummary:
    cases: int
    messages: int
    participations: int


def merge_summary(db: Session, other: Contact) -> MergeSummary:
    """What a merge of `other` would move, for the confirmation page."""
    cases = db.exec(select(func.count()).select_from(Case).where(Case.contact_id == other.id))
    messages = db.exec(
        select(func.count()).select_from(Message).where(Message.contact_id == other.id)
    )
    parts = db.exec(
        select(func.count())
        .select_from(CaseParticipant)
        .where(CaseParticipant.email_key == other.email_key)
    )
    return MergeSummary(int(cases.one()), int(messages.one()), int(parts.one()))


def merge(db: Session, keep_id: int, other_id: int) -> Contact:
    """Merge contact `other_id` into `keep_id` and delete it; commits. Returns the kept one."""
    if keep_id == other_id:
        raise ContactError("A contact cannot be merged into itself.")
    keep, other = db.get(Contact, keep_id), db.get(Contact, other_id)
    if keep is None or other is None:
        raise ContactError("One of the two contacts no longer exists.")
    db.exec(update(Case).where(col(Case.contact_id) == other.id).values(contact_id=keep.id))
    db.exec(update(Message).where(col(Message.contact_id) == other.id).values(contact_id=keep.id))
    taken = db.exec(
        select(CaseParticipant.case_id, CaseParticipant.role).where(
            CaseParticipant.email_key == other.email_key
        )
    ).all()
    for case_id, role in taken:  # the other address keeps its place too (it is an alias now)
        db.exec(
            insert_ignore(db, CaseParticipant.__table__).values(
                case_id=case_id, email_key=keep.email_key, role=role
            )
        )
    db.exec(
        update(ContactAlias)
        .where(col(ContactAlias.contact_id) == other.id)
        .values(contact_id=keep.id)
    )
    db.exec(delete(ContactAlias).where(col(ContactAlias.email_key) == keep.email_key))
    db.exec(
        insert_ignore(db, ContactAlias.__table__).values(
            email_key=other.email_key, contact_id=keep.id, created_at=utcnow()
        )
    )
    if not keep.name.strip() and other.name.strip():
        keep.name = other.name
    keep.updated_at = utcnow()
    db.add(keep)
    db.delete(other)
    db.commit()
    return keep


def contacts_page(
    db: Session, page: int = 1, per_page: int = PER_PAGE
) -> tuple[list[tuple[Contact, int]], int]:
    """Contacts by id with their number of cases: count, page, one grouped count."""
    total = int(db.exec(select(func.count()).select_from(Contact)).one())
    rows = db.exec(
        select(Contact).order_by(col(Contact.id)).offset((page - 1) * per_page).limit(per_page)
    ).all()
    ids = [c.id for c in rows]
    cases: dict[int, int] = {}
    if ids:
        grouped = db.exec(
            select(Case.contact_id, func.count())
            .where(col(Case.contact_id).in_(ids))
            .group_by(Case.contact_id)
        ).all()
        cases = {contact_id: int(n) for contact_id, n in grouped}
    return [(c, cases.get(c.id, 0)) for c in rows], total
