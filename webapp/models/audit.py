"""The audit log: who did what, from where; never a secret."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from webapp.db import utcnow


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    # The user who acted; null for the system, an incoming email or an unknown sign-in.
    actor_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    action: str = Field(max_length=40, index=True)  # sign_in, user.created, mailbox.changed, ...
    target: str = Field(default="", max_length=400)  # what it was done to, in words
    details: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    address: str = Field(default="", max_length=64)  # the client's IP address, when a person acted
