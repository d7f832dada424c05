"""Push (IMAP IDLE): which watcher listens to which mailbox, what it saw, and who is alive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel

from webapp.db import utcnow


class WatchLease(SQLModel, table=True):
    """One watcher listens to a mailbox at a time: taken atomically, renewed every few seconds.

    The row also carries what the mailbox page shows about push; it goes when the mailbox
    stops being watched (disabled, deleted, re-authorization needed).
    """

    __tablename__ = "watch_lease"

    mailbox_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("mailbox.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    holder: str = Field(max_length=120)
    expires_at: datetime
    acquired_at: datetime = Field(default_factory=utcnow)
    # Set while every chosen folder is in IDLE; None while connecting or reconnecting.
    watching_since: datetime | None = None
    idle_supported: bool | None = None  # None: not known yet; False: the server lacks IDLE
    last_event: str | None = Field(default=None, max_length=200)
    last_event_at: datetime | None = None
    # Space-separated epoch seconds of the reconnects of the last hour (a small ring).
    reconnects: str = Field(default="", sa_column_kwargs={"server_default": ""})
    error: str | None = Field(default=None, max_length=500)


class Watcher(SQLModel, table=True):
    """A live watcher process: its heartbeat tells the others how many share the mailboxes."""

    __tablename__ = "watcher"

    holder: str = Field(primary_key=True, max_length=120)
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow, index=True)
