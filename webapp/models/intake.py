"""Inbound filtering: messages held or filtered before they became a case, and why.

One HeldMessage per raw message that the Email Filtering settings stopped. Held ones
wait for a person (release or discard) or for the sender's confirmation; filtered ones
are kept only so the admin can see why a message created nothing. SenderChallenge is
the claim "this sender got its confirmation mail today": unique per sender and day, so
two workers can never both send one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer
from sqlmodel import Field, SQLModel, UniqueConstraint

from webapp.db import utcnow

# HeldMessage.reason
UNKNOWN_SENDER = "unknown_sender"  # Create New Contact is off: a person reviews it
CONFIRMATION = "confirmation"  # waits for the sender to confirm (or a person to release)
NO_NEW_CASE = "no_new_case"  # Allow New Case is off and it answers no case
BLOCKED = "blocked"  # a block: rule of the Sender Email Address Filter
OWN_MAILBOX = "own_mailbox"  # sent by one of our own mailboxes: a loop
CONFIRMATION_REPLY = "confirmation_reply"  # the sender's reply to our confirmation mail
REASONS = (UNKNOWN_SENDER, CONFIRMATION, NO_NEW_CASE, BLOCKED, OWN_MAILBOX, CONFIRMATION_REPLY)
HOLD_REASONS = (UNKNOWN_SENDER, CONFIRMATION)

REASON_LABELS = {
    UNKNOWN_SENDER: "Unknown sender",
    CONFIRMATION: "Awaiting confirmation",
    NO_NEW_CASE: "New cases not allowed",
    BLOCKED: "Blocked sender",
    OWN_MAILBOX: "From our own mailbox",
    CONFIRMATION_REPLY: "Reply to a confirmation mail",
}

# HeldMessage.state
HELD = "held"
RELEASED = "released"  # filed into a case (by a person, the sender's confirmation or a reprocess)
DISCARDED = "discarded"
EXPIRED = "expired"  # the sender never confirmed
FILTERED = "filtered"
STATES = (HELD, RELEASED, DISCARDED, EXPIRED, FILTERED)


def _fk(target: str, ondelete: str, nullable: bool = True, index: bool = True) -> Column:
    return Column(Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


class HeldMessage(SQLModel, table=True):
    """A message that did not become a case when it came in, and what happened to it since."""

    __tablename__ = "held_message"
    __table_args__ = (Index("ix_held_message_state_mailbox", "state", "mailbox_id"),)

    id: int | None = Field(default=None, primary_key=True)
    raw_message_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("raw_message.id", ondelete="CASCADE"), nullable=False, unique=True
        )
    )
    mailbox_id: int = Field(sa_column=_fk("mailbox.id", "CASCADE", nullable=False))
    sender: str = Field(default="", max_length=320)  # as in From
    sender_key: str = Field(default="", max_length=320, index=True)  # lowercased
    sender_name: str = Field(default="", max_length=200)
    subject: str = Field(default="", max_length=1000)
    reason: str = Field(max_length=32)  # one of REASONS
    detail: str = Field(default="")  # the decision in words, for the admin
    state: str = Field(default=HELD, max_length=16)
    automated: str | None = Field(default=None, max_length=200)  # why it looks machine-sent
    backlog: bool = False
    # What was decided about an automatic mail to the sender (sent, or why not).
    mail_decision: str = Field(default="", max_length=500)
    mail_sent_at: datetime | None = None  # the confirmation mail, or the no-new-case notice
    # Message-ID of that mail: a reply to a confirmation mail confirms too.
    mail_message_id: str | None = Field(default=None, max_length=998, index=True)
    expires_at: datetime | None = None  # a confirmation hold expires unconfirmed
    decided_at: datetime | None = None  # released, discarded or expired
    decided_by: str = Field(default="", max_length=320)  # an admin's address, "sender", "expiry"
    created_at: datetime = Field(default_factory=utcnow)


class SenderChallenge(SQLModel, table=True):
    """One confirmation mail to a sender on one (UTC) day: at most one per sender per day."""

    __tablename__ = "sender_challenge"
    __table_args__ = (UniqueConstraint("sender_key", "day", name="uq_sender_challenge_day"),)

    id: int | None = Field(default=None, primary_key=True)
    sender_key: str = Field(max_length=320)
    day: str = Field(max_length=10)  # YYYY-MM-DD in UTC
    held_message_id: int | None = Field(
        default=None, sa_column=_fk("held_message.id", "SET NULL", index=False)
    )
    sent_at: datetime = Field(default_factory=utcnow, index=True)


class ContactAlias(SQLModel, table=True):
    """Another address of a contact, left behind by a merge: mail from it finds the contact."""

    __tablename__ = "contact_alias"

    id: int | None = Field(default=None, primary_key=True)
    email_key: str = Field(max_length=320, unique=True, index=True)
    contact_id: int = Field(sa_column=_fk("contact.id", "CASCADE", nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
