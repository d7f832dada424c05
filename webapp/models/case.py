"""Cases, the messages on them (the first one opens the case, the others are comments)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Sequence,
    text,
)
from sqlmodel import Field, SQLModel, UniqueConstraint

from webapp.db import utcnow


def _fk(target: str, ondelete: str, nullable: bool = True, index: bool = True) -> Column:
    return Column(Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


class Counter(SQLModel, table=True):
    """Named counters bumped with one atomic UPDATE (case numbers on SQLite)."""

    name: str = Field(primary_key=True, max_length=32)
    value: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


# Case numbers on PostgreSQL (services/ingest/filing.py): nextval takes no lock that lasts
# until the transaction ends, so workers filing at once never wait for each other's number.
CASE_NUMBERS = Sequence("case_number_seq", metadata=SQLModel.metadata)


class Case(SQLModel, table=True):
    # The case list's default order, updated_at then id, whole in the first two indexes:
    # PostgreSQL reads a page's ids from the index alone (migration 0026 says why not the
    # third).
    __table_args__ = (
        Index("ix_case_updated_at", "updated_at", "id"),
        Index("ix_case_status_updated_at", "status", "updated_at", "id"),
        Index("ix_case_mailbox_id_updated_at", "mailbox_id", "updated_at"),  # a mailbox's cases
    )

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(
        unique=True, index=True
    )  # shown as [#number]; CASE_NUMBERS or Counter "case"
    subject: str = Field(default="", max_length=1000)
    status: str = Field(default="open", max_length=16, index=True)  # open | pending | closed
    contact_id: int | None = Field(default=None, sa_column=_fk("contact.id", "SET NULL"))
    requester_email: str = Field(default="", max_length=320)
    mailbox_id: int | None = Field(default=None, sa_column=_fk("mailbox.id", "SET NULL"))
    assignee_id: int | None = Field(default=None, sa_column=_fk("user.id", "SET NULL"))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# Case.status
OPEN = "open"
PENDING = "pending"  # waiting for the customer: their next email makes it open again
CLOSED = "closed"
STATUSES = (OPEN, PENDING, CLOSED)
# CaseEvent.action
CLOSED_EVENT = "closed"
REOPENED_EVENT = "reopened"
PENDING_EVENT = "pending"
ASSIGNED_EVENT = "assigned"  # detail: the assignee's name, "" when unassigned
# Message.direction
INCOMING = "in"
OUTGOING = "out"
NOTE = "note"  # an internal note: stays inside, never emailed


class CaseEvent(SQLModel, table=True):
    """One line of a case's history: who closed, reopened, set it pending or assigned it,
    when, and how."""

    __tablename__ = "case_event"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(sa_column=_fk("case.id", "CASCADE", nullable=False))
    action: str = Field(max_length=16)  # closed | reopened | pending | assigned
    actor: str = Field(default="", max_length=320)  # an agent's address, or the email's sender
    via: str = Field(default="", max_length=32)  # case page | send and close | incoming email
    # The incoming email that reopened the case, when one did.
    message_id: int | None = Field(
        default=None, sa_column=_fk("message.id", "SET NULL", index=False)
    )
    detail: str = Field(default="", max_length=320)  # assigned: to whom (their name)
    created_at: datetime = Field(default_factory=utcnow)


class CaseParticipant(SQLModel, table=True):
    """An address allowed to write into a case by its [#number] token alone."""

    __tablename__ = "case_participant"
    __table_args__ = (UniqueConstraint("case_id", "email_key", name="uq_case_participant"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(sa_column=_fk("case.id", "CASCADE", nullable=False, index=False))
    email_key: str = Field(max_length=320, index=True)
    role: str = Field(default="requester", max_length=16)  # requester | cc | sender


class Message(SQLModel, table=True):
    """One email on a case: the one that opened it, or a comment."""

    __table_args__ = (
        # The mailbox page's "cases made": counted from the opening messages alone.
        Index(
            "ix_message_cases_made",
            "mailbox_id",
            sqlite_where=text("opened_case = 1"),
            postgresql_where=text("opened_case"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(sa_column=_fk("case.id", "CASCADE", nullable=False))
    # Unique: processing a raw message twice can never add a second comment.
    raw_message_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("raw_message.id", ondelete="SET NULL"), unique=True),
    )
    mailbox_id: int | None = Field(
        default=None, sa_column=_fk("mailbox.id", "SET NULL", index=False)
    )
    contact_id: int | None = Field(default=None, sa_column=_fk("contact.id", "SET NULL"))
    direction: str = Field(default="in", max_length=8)  # in | out | note (internal)
    opened_case: bool = False  # True for the message that created the case
    from_address: str = Field(default="", max_length=320)
    from_name: str = Field(default="", max_length=200)
    to_addresses: str = Field(default="")  # comma-separated
    cc_addresses: str = Field(default="")
    sent_at: datetime | None = None  # the Date header
    received_at: datetime = Field(default_factory=utcnow)
    subject: str = Field(default="", max_length=1000)
    text: str = Field(default="")  # the reply part (above the End of Message Marker / quotes)
    full_text: str = Field(default="")
    html: str | None = None  # as received: sanitise at display
    message_id: str | None = Field(default=None, max_length=998, index=True)
    in_reply_to: str = Field(default="")  # space-separated message-ids
    references_ids: str = Field(default="")
    automated: str | None = Field(default=None, max_length=200)  # why it looks machine-sent
    backlog: bool = False  # was in the mailbox before fetching was turned on: never acknowledge
    parse_notes: str = Field(default="")
    created_at: datetime = Field(default_factory=utcnow)


class MessageMailbox(SQLModel, table=True):
    """One more of our mailboxes that an email filed once came through.

    The same email (its Message-ID and sender) sent to support@ and sales@ becomes one
    message, filed from the mailbox that was read first (Message.mailbox_id, and the case's
    mailbox when it opened the case); each other mailbox it came through is a row here,
    never a second message or case (services/ingest/route.py). A case came through its own
    mailbox and the mailboxes of these rows for its messages; the list of one mailbox's cases
    shows them too.
    """

    __tablename__ = "message_mailbox"
    __table_args__ = (UniqueConstraint("message_id", "mailbox_id", name="uq_message_mailbox"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(sa_column=_fk("message.id", "CASCADE", nullable=False, index=False))
    mailbox_id: int = Field(sa_column=_fk("mailbox.id", "CASCADE", nullable=False))
    # The copy as fetched from that mailbox (its fetch log says it was a duplicate).
    raw_message_id: int | None = Field(
        default=None, sa_column=_fk("raw_message.id", "SET NULL", index=False)
    )
    created_at: datetime = Field(default_factory=utcnow)


class Attachment(SQLModel, table=True):
    """Attachment metadata; the bytes only when the mailbox keeps attachments."""

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(sa_column=_fk("message.id", "CASCADE", nullable=False))
    filename: str = Field(default="", max_length=255)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    size: int = 0
    content_id: str | None = Field(default=None, max_length=998)
    inline: bool = False
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    not_kept_reason: str | None = Field(default=None, max_length=200)  # why data is None
