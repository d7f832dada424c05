"""People who write to us, matched by address case-insensitively."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from webapp.db import utcnow


def email_key(address: str) -> str:
    """The matching key of an address: trimmed and lowercased."""
    return address.strip().lower()


class Contact(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)  # as first seen
    email_key: str = Field(max_length=320, unique=True, index=True)  # lowercased, for matching
    name: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
