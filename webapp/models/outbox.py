"""The outbox: every email we send is a row first, built in full, then handed to SMTP.

One row per message, unique by idempotency_key, so asking twice (a double click, a
rerun after a crash) never queues two. The raw bytes and the Message-ID are stored
when the row is made, before any attempt, so a retry sends exactly the same message.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary
from sqlmodel import Field, SQLModel

from webapp.db import utcnow

# OutboxMessage.state
QUEUED = "queued"  # waiting for its next attempt (next_attempt_at)
SENDING = "sending"  # claimed by a worker (holder, lease_until); the SMTP transaction runs
SENT = "sent"  # the server accepted it (server_reply)
FAILED = "failed"  # refused (5xx) or out of attempts: not retried; Send again after a fix
UNCERTAIN = "uncertain"  # the worker died mid-send: maybe delivered; a person decides (Send again)
SUPPRESSED = "suppressed"  # automatic mail over the per-sender ceiling: never sent
STATES = (QUEUED, SENDING, SENT, FAILED, UNCERTAIN, SUPPRESSED)
NEEDS_ATTENTION = (FAILED, UNCERTAIN)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"
    __table_args__ = (
        Index("ix_outbox_message_due", "state", "next_attempt_at"),
        # The acknowledgement interval and the automatic-mail ceiling count per sender and mailbox.
        Index("ix_outbox_message_rate", "mailbox_id", "to_key", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True, index=True)
    kind: str = Field(
        default="comment", max_length=32
    )  # comment | auto_ack | confirmation | task …
    mailbox_id: int = Field(
        sa_column=Column(Integer, ForeignKey("mailbox.id", ondelete="CASCADE"), nullable=False)
    )
    case_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("case.id", ondelete="SET NULL"), index=True),
    )
    # The comment in the case conversation this email carries (direction "out"), if any.
    case_message_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("message.id", ondelete="SET NULL"), index=True),
    )
    created_by: str | None = Field(default=None, max_length=320)  # the agent, for comments

    # What goes out, exactly as sent
    to_addr: str = Field(max_length=320)
    to_key: str = Field(max_length=320)  # lowercased, for the per-sender counts
    to_name: str = Field(default="", max_length=200)
    subject: str = Field(default="", max_length=1000)
    text: str = Field(default="")  # the rendered text body, without the marker
    html: str | None = None
    auto_submitted: str | None = Field(default=None, max_length=32)  # set on automatic mail
    message_id: str = Field(max_length=998, index=True)  # with angle brackets, as in the header
    in_reply_to: str = Field(default="", max_length=998)
    references_ids: str = Field(default="")  # space-separated
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))

    # Delivery
    state: str = Field(default=QUEUED, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    job_enqueued_at: datetime | None = None  # a send job was put on the queue (the bell)
    holder: str | None = Field(default=None, max_length=120)  # the worker sending it now
    lease_until: datetime | None = None
    sending_started_at: datetime | None = None
    sent_at: datetime | None = None
    last_error_kind: str | None = Field(default=None, max_length=32)
    last_error: str | None = None
    server_code: int | None = None
    server_reply: str | None = Field(default=None, max_length=300)

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def needs_attention(self) -> bool:
        return self.state in NEEDS_ATTENTION
