"""Fetch bookkeeping: where each folder was read up to, who is fetching, and the fetch log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer
from sqlmodel import Field, SQLModel, UniqueConstraint

from webapp.db import utcnow


def _mailbox_fk(primary_key: bool = False) -> Column:
    return Column(
        Integer,
        ForeignKey("mailbox.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
        index=not primary_key,
    )


class FetchCursor(SQLModel, table=True):
    """IMAP: every UID up to last_uid of (folder, uidvalidity) is stored."""

    __tablename__ = "fetch_cursor"
    __table_args__ = (UniqueConstraint("mailbox_id", "folder", name="uq_fetch_cursor_folder"),)

    id: int | None = Field(default=None, primary_key=True)
    mailbox_id: int = Field(sa_column=_mailbox_fk())
    folder: str = Field(max_length=255)
    uidvalidity: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_uid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # A folder added after the mailbox's first fetch: UIDs up to this one were there before
    # it was chosen, so they are backlog (never acknowledged). 0: none.
    backlog_until: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    updated_at: datetime = Field(default_factory=utcnow)


class FetchLease(SQLModel, table=True):
    """At most one fetch per mailbox: taken atomically, renewed while the fetch runs."""

    __tablename__ = "fetch_lease"

    mailbox_id: int = Field(sa_column=_mailbox_fk(primary_key=True))
    holder: str = Field(max_length=120)
    expires_at: datetime
    acquired_at: datetime = Field(default_factory=utcnow)


class FetchRun(SQLModel, table=True):
    """One row of the fetch log: a fetch (or processing) run of one mailbox."""

    __tablename__ = "fetch_run"
    __table_args__ = (Index("ix_fetch_run_mailbox_started", "mailbox_id", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    mailbox_id: int = Field(
        sa_column=Column(Integer, ForeignKey("mailbox.id", ondelete="CASCADE"), nullable=False)
    )
    holder: str = Field(default="", max_length=120)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    state: str = Field(default="running", max_length=16)  # running | ok | error | interrupted
    first_run: bool = False  # the first fetch of the mailbox (backlog)
    total: int | None = None  # messages to fetch in this run, once listed
    done: int = 0  # of those, stored so far (progress)
    new_messages: int = 0
    failed_messages: int = 0
    fetch_commands: int = 0  # IMAP FETCH / POP3 RETR commands sent (0 for an unchanged mailbox)
    notes: str = Field(default="")  # e.g. "UIDVALIDITY changed: the folder was listed again"
    error_kind: str | None = Field(default=None, max_length=32)
    error: str | None = None
    error_advice: str | None = None
