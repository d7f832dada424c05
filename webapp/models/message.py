"""Raw emails exactly as fetched: stored first, processed into cases afterwards."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, LargeBinary
from sqlmodel import Field, SQLModel, UniqueConstraint

from webapp.db import utcnow

# RawMessage.state
NEW = "new"  # stored, not processed yet (found again by a query after a crash)
DONE = "done"  # became a case or a comment
FAILED = "failed"  # kept raw; `error` says why; Reprocess retries
TOO_LARGE = "too_large"  # over the mailbox's size limit: metadata only, left on the server
IGNORED = "ignored"  # processed, deliberately not turned into a case; `error` says why
REFETCH = "refetch"  # too large before; Reprocess asked the next fetch to download it again
SKIPPED = "skipped"  # POP3: sent before Fetch mail since; only its headers were read
STATES = (NEW, DONE, FAILED, TOO_LARGE, IGNORED, REFETCH, SKIPPED)


class RawMessage(SQLModel, table=True):
    """One message as fetched; unique per server position and per content."""

    __tablename__ = "raw_message"
    __table_args__ = (
        UniqueConstraint(
            "mailbox_id", "folder", "uidvalidity", "uid", name="uq_raw_message_imap_uid"
        ),
        UniqueConstraint("mailbox_id", "uidl", name="uq_raw_message_pop3_uidl"),
        # Same bytes in the same mailbox (UIDVALIDITY change, message moved back) are one message.
        UniqueConstraint("mailbox_id", "sha256", name="uq_raw_message_content"),
        Index("ix_raw_message_mailbox_state", "mailbox_id", "state"),
        # Does a reply wait for the message it answers (services/ingest/claims.py)?
        Index("ix_raw_message_mailbox_message_id", "mailbox_id", "message_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    mailbox_id: int = Field(
        sa_column=Column(Integer, ForeignKey("mailbox.id", ondelete="CASCADE"), nullable=False)
    )
    folder: str = Field(default="", max_length=255)  # IMAP folder; "" for POP3
    uidvalidity: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    uid: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    uidl: str | None = Field(default=None, max_length=255)
    sha256: str | None = Field(default=None, max_length=64)  # None when too large (not downloaded)
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    message_id: str | None = Field(default=None, max_length=998)
    header_from: str = Field(default="", max_length=320)  # for the fetch log, read without parsing
    header_subject: str = Field(default="", max_length=300)
    state: str = Field(default=NEW, max_length=16, index=True)
    error: str | None = None
    attempts: int = (
        0  # processing attempts started; a message that kills the worker stops at a limit
    )
    backlog: bool = False  # in the mailbox before fetching was turned on
    server_pending: bool = False  # mark-as-read / delete-from-server still to do
    fetch_run_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("fetch_run.id", ondelete="SET NULL"), index=True),
    )
    fetched_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = None
    # A worker filing this NEW row (services/ingest/claims.py); another takes it over after
    # claimed_until. Never read for a row that is no longer NEW.
    claimed_by: str | None = Field(default=None, max_length=120)
    claimed_until: datetime | None = None


class RawMessageBody(SQLModel, table=True):
    """The bytes of a raw message, apart so that lists never load them."""

    __tablename__ = "raw_message_body"

    raw_message_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("raw_message.id", ondelete="CASCADE"), primary_key=True
        )
    )
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
