"""Read side of cases for the pages and the API: one page of cases, a conversation, attachments.

Every function answers with a fixed number of queries whatever the page holds
(no query per row), and list pages use the indexes on case.updated_at / number:
one COUNT per page, then the page's case ids alone (OFFSET over the index, from the end for
the pages past the middle; keyset for the API), then those cases' rows. The list's preview of
the last message and its time are subqueries of that last query.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import case as sql_case
from sqlalchemy import literal, text, union_all
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, func, select

from webapp.db import natural_order
from webapp.models import (
    Attachment,
    Case,
    Contact,
    Mailbox,
    Message,
    MessageMailbox,
    User,
)
from webapp.models.case import STATUSES
from webapp.services import case_lists
from webapp.services.case_lists import PER_PAGE, by_status
from webapp.services.ingest.attachments import (
    KEPT_ATTACHMENTS,
    NOT_KEPT_ATTACHMENTS_OFF,
    NOT_KEPT_BEYOND_LIMIT,
)

PREVIEW_CHARS = 120
MINE, UNASSIGNED = "me", "none"  # the list's assignee filter, besides a user's id
SORTS = ("number", "subject", "contact", "status", "assignee", "last")
# cid: images are inlined as data: URLs (the message frame may load nothing else); raster only.
INLINE_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_INLINE_IMAGE_BYTES = 2 * 1024 * 1024
_REMOTE_IMG = re.compile(r"""<img\b[^>]{0,4000}?\ssrc\s*=\s*["']?\s*(?:https?:)?//""", re.I)


class MailboxRef(NamedTuple):
    """A mailbox of ours as a case shows it."""

    id: int
    name: str
    email_address: str


@dataclass
class CaseRow:
    case: Case
    contact_name: str | None
    contact_email: str | None
    mailbox_name: str | None
    assignee_name: str | None = None
    last_at: datetime | None = None  # when the last message arrived (or was written)
    preview: str = ""  # the start of its text
    last_direction: str | None = None  # in | out | note
    # The other mailboxes of ours its email came through (the same email to support@ and sales@).
    also: list[MailboxRef] = field(default_factory=list)


@dataclass
class CasePage:
    rows: list[CaseRow]
    total: int
    page: int
    per_page: int = PER_PAGE
    searched_newest: int | None = None  # a search that stopped at the newest N matching messages

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass
class AttachmentInfo:
    """An attachment's metadata, never its bytes."""

    id: int
    message_id: int
    name: str
    size: int
    content_type: str
    inline: bool
    kept: bool
    reason: str | None = None  # why the bytes were not kept

    def as_json(self) -> dict:
        item = {"name": self.name, "size": self.size, "content_type": self.content_type}
        if not self.kept:
            item["reason"] = self.reason
        return item


@dataclass
class MessageAttachments:
    kept: list[AttachmentInfo] = field(default_factory=list)
    not_kept: list[AttachmentInfo] = field(default_factory=list)

    @property
    def all(self) -> list[AttachmentInfo]:
        return sorted(self.kept + self.not_kept, key=lambda a: a.id)


@dataclass
class CaseFilters:
    """The case list's filters: status, mailbox, assignee ("me", "none" or a user id)."""

    status: str | None = None
    mailbox_id: int | None = None
    assignee: str | None = None
    user_id: int | None = None  # who "me" is

    def by_status_alone(self) -> bool:
        """Whether the status is the only filter that narrows the list (or none does)."""
        return not self.mailbox_id and len(self.where()) == len(by_status(self.status))

    def where(self) -> list:
        """The terms of every filter but the mailbox (case_lists.in_mailbox and count_cases)."""
        where = by_status(self.status)
        if self.assignee == UNASSIGNED:
            where.append(col(Case.assignee_id).is_(None))
        elif self.assignee == MINE:
            where.append(col(Case.assignee_id) == self.user_id)
        elif self.assignee and self.assignee.isdigit():
            where.append(col(Case.assignee_id) == int(self.assignee))
        return where


def _last_message():
    """The case list's last message: its time (case.last_message_at, kept by triggers), and
    correlated subqueries for its text start and direction."""
    latest = aliased(Message)
    last_id = (
        select(func.max(latest.id))
        .where(latest.case_id == col(Case.id))
        .correlate(Case)
        .scalar_subquery()
    )

    def of_last(column):
        return select(column).where(col(Message.id) == last_id).correlate(Case).scalar_subquery()

    return (
        case_lists.LAST_MESSAGE_AT,
        of_last(func.substr(col(Message.text), 1, PREVIEW_CHARS * 2)),
        of_last(col(Message.direction)),
    )


def _order(sort: str | None, descending: bool, last_at, backwards: bool = False) -> list:
    """ORDER BY terms, each ending with the case id so that the order is total; `backwards`
    gives the exact reverse (for the pages past the middle, read from the end)."""
    if sort not in SORTS:
        terms, descending = [col(Case.updated_at)], True
    else:
        terms = {
            "number": [col(Case.number)],
            "subject": natural_order(Case.subject),
            "contact": natural_order(case_lists.CONTACT_SORT),
            "status": [sql_case({s: i for i, s in enumerate(STATUSES)}, value=col(Case.status))],
            "assignee": [col(User.id).is_(None), *natural_order(User.name)],
            "last": [last_at],
        }[sort]
    terms = [*terms, col(Case.id)]
    return [t.desc() for t in terms] if descending != backwards else terms


def other_mailboxes(db: Session, case_ids: list[int]) -> dict[int, list[MailboxRef]]:
    """Case id -> the mailboxes other than its own that its emails also came through."""
    return {
        case_id: [ref for ref in refs if ref.id != own]
        for case_id, (own, refs) in _mailboxes(db, case_ids).items()
    }


def mailboxes_by_case(db: Session, case_ids: list[int]) -> dict[int, list[MailboxRef]]:
    """Case id -> the mailboxes it came through: its own first (replies go out through it),
    then the others its emails were also sent to."""
    return {case_id: refs for case_id, (_, refs) in _mailboxes(db, case_ids).items()}


def _mailboxes(db: Session, case_ids: list[int]) -> dict[int, tuple[int | None, list[MailboxRef]]]:
    """Case id -> (its own mailbox's id, its own mailbox then those of its MessageMailbox rows
    in the order they came, each once): one query."""
    out: dict[int, tuple[int | None, list[MailboxRef]]] = {i: (None, []) for i in case_ids}
    if not case_ids:
        return out
    boxes = (Mailbox.id, Mailbox.name, Mailbox.email_address)
    own = (
        select(Case.id, *boxes, literal(0).label("seen"))
        .join(Mailbox, col(Mailbox.id) == col(Case.mailbox_id))
        .where(col(Case.id).in_(case_ids))
    )
    others = (
        select(Message.case_id, *boxes, col(MessageMailbox.id).label("seen"))
        .join(MessageMailbox, col(MessageMailbox.message_id) == col(Message.id))
        .join(Mailbox, col(Mailbox.id) == col(MessageMailbox.mailbox_id))
        .where(col(Message.case_id).in_(case_ids))
    )
    for case_id, box_id, name, address, seen in db.exec(
        union_all(own, others).order_by(text("seen"))
    ).all():
        own_id, refs = out[case_id]
        ref = MailboxRef(box_id, name, address)
        if ref not in refs:
            refs.append(ref)
        if seen == 0:
            out[case_id] = (box_id, refs)
    return out


def list_cases(
    db: Session,
    page: int = 1,
    filters: CaseFilters | None = None,
    sort: str | None = None,
    descending: bool = False,
    per_page: int = PER_PAGE,
    q: str = "",
) -> CasePage:
    """Newest activity first (or by `sort`: one of SORTS), with contact, mailbox and assignee
    names, the last message's time and start (and the other mailboxes each case came
    through); `q` keeps the cases with a message matching its words: four queries (five with q)."""
    filters = filters or CaseFilters()
    found = case_lists.matching(db, q)
    if found is None and filters.by_status_alone():
        total = case_lists.count_by_status(db, filters.status)
    else:
        total = case_lists.count_cases(db, filters.where(), filters.mailbox_id, found)
    where = case_lists.narrowed(filters.where(), found, filters.mailbox_id)
    last_at, last_text, last_direction = _last_message()
    ids_query = select(Case.id).where(*where)
    if sort == "assignee":  # the one order that needs another table (the filters never do)
        ids_query = ids_query.outerjoin(User, col(User.id) == col(Case.assignee_id))
    order = lambda back: _order(sort, descending, last_at, back)  # noqa: E731
    ids = case_lists.page_of(ids_query, order, page, per_page, total)
    query = (
        select(Case, Contact.name, Contact.email, Mailbox.name, User.name, User.email)
        .add_columns(last_at, last_text, last_direction)
        .outerjoin(Contact, col(Contact.id) == col(Case.contact_id))
        .outerjoin(Mailbox, col(Mailbox.id) == col(Case.mailbox_id))
        .outerjoin(User, col(User.id) == col(Case.assignee_id))
    )
    if ids is None:
        return CasePage([], total, page, per_page, found and found.limit)
    query = query.where(col(Case.id).in_(ids.correlate(None))).order_by(*order(False))
    rows = [
        CaseRow(c, name, email, box, user_name or (user_email or "").split("@")[0] or None,
                at, _preview(text_start), direction)
        for c, name, email, box, user_name, user_email, at, text_start, direction in db.exec(
            query
        ).all()
    ]  # fmt: skip
    also = other_mailboxes(db, [row.case.id for row in rows])
    for row in rows:
        row.also = also[row.case.id]
    return CasePage(rows, total, page, per_page, found and found.limit)


def _preview(text_start: str | None) -> str:
    """One line of at most PREVIEW_CHARS characters."""
    line = " ".join((text_start or "").split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1].rstrip() + "…"


SHOWN_MESSAGES = 50  # a longer case shows its first message and the newest others


@dataclass
class Conversation:
    """The messages a case page shows, in the order they arrived, and the ids of the earlier
    ones it leaves out (between the first and the newest), in order."""

    messages: list[Message]
    hidden_ids: list[int]


def conversation(db: Session, case_id: int, everything: bool = False) -> Conversation:
    """A case's messages: all of them, or for a case of more than SHOWN_MESSAGES the first
    (what the customer asked) and the newest others. A case of 200 messages took 70 ms to
    show, most of it writing the messages out: the rest is one click away."""
    ids = conversation_ids(db, case_id)
    hidden = [] if everything else _left_out(ids)
    shown = [ids[0], *ids[-(SHOWN_MESSAGES - 1) :]] if hidden else ids
    query = select(Message).where(col(Message.id).in_(shown)).order_by(col(Message.id))
    return Conversation(list(db.exec(query).all()) if shown else [], hidden)


def hidden_message_ids(db: Session, case_id: int) -> list[int]:
    """The ids a case page leaves out when it does not show everything."""
    return _left_out(conversation_ids(db, case_id))


def _left_out(ids: list[int]) -> list[int]:
    """Of a case's message ids in order, those between the first and the newest others."""
    return ids[1 : -(SHOWN_MESSAGES - 1)]


def conversation_ids(db: Session, case_id: int) -> list[int]:
    query = select(Message.id).where(Message.case_id == case_id).order_by(col(Message.id))
    return list(db.exec(query).all())


def not_kept_reason(mailbox_kept: bool, index: int) -> str:
    """For attachments stored before the reason was (migration 0006): a likely one."""
    if index >= KEPT_ATTACHMENTS:
        return NOT_KEPT_BEYOND_LIMIT
    if not mailbox_kept:
        return NOT_KEPT_ATTACHMENTS_OFF
    return "the mailbox did not keep attachments when this message arrived"


def attachments_by_message(
    db: Session, message_ids: list[int], case_ids: list[int] | None = None
) -> dict[int, MessageAttachments]:
    """Attachment metadata of many messages in one query; the bytes are not read. With
    `case_ids`, when the messages are every message of these cases, they are chosen by case
    (a page of the API: 50 ids in the query rather than hundreds)."""
    out = {message_id: MessageAttachments() for message_id in message_ids}
    if not message_ids:
        return out
    query = (
        select(
            Attachment.id,
            Attachment.message_id,
            Attachment.filename,
            Attachment.size,
            Attachment.content_type,
            Attachment.inline,
            col(Attachment.data).is_not(None),
            Mailbox.keep_attachments,
            Attachment.not_kept_reason,
        )
        .join(Message, col(Message.id) == col(Attachment.message_id))
        .outerjoin(Mailbox, col(Mailbox.id) == col(Message.mailbox_id))
        .where(
            col(Message.case_id).in_(case_ids)
            if case_ids is not None
            else col(Attachment.message_id).in_(message_ids)
        )
        .order_by(col(Attachment.message_id), col(Attachment.id))
    )
    index: dict[int, int] = {}
    for aid, mid, name, size, ctype, inline, kept, keeps, stored_reason in db.exec(query).all():
        if mid not in out:  # by case: a message filed since the caller read them
            continue
        position = index.get(mid, 0)
        index[mid] = position + 1
        info = AttachmentInfo(aid, mid, name, size, ctype, bool(inline), bool(kept))
        if kept:
            out[mid].kept.append(info)
        else:
            info.reason = stored_reason or not_kept_reason(bool(keeps), position)
            out[mid].not_kept.append(info)
    return out


def inline_images(db: Session, message_id: int) -> dict[str, str]:
    """Content-ID -> data: URL of a message's kept raster images (for cid: sources)."""
    query = select(Attachment.content_id, Attachment.content_type, Attachment.data).where(
        Attachment.message_id == message_id,
        col(Attachment.content_id).is_not(None),
        col(Attachment.data).is_not(None),
        col(Attachment.content_type).in_(INLINE_IMAGE_TYPES),
        col(Attachment.size) <= MAX_INLINE_IMAGE_BYTES,
    )
    out = {}
    for content_id, ctype, data in db.exec(query).all():
        if data and len(data) <= MAX_INLINE_IMAGE_BYTES:
            out[content_id] = f"data:{ctype};base64,{base64.b64encode(data).decode()}"
    return out


def has_remote_images(html: str | None) -> bool:
    """Whether showing remote images would change anything (a bounded scan)."""
    return bool(html) and _REMOTE_IMG.search(html) is not None
