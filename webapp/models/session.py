"""Signed-in sessions kept on the server, sign-in throttling, and one-time installation steps."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from webapp.db import utcnow


class UserSession(SQLModel, table=True):
    """One signed-in browser. The cookie holds a random token; only its SHA-256 is kept here,
    so a copy of the database cannot be replayed as a cookie."""

    __tablename__ = "user_session"

    id: str = Field(primary_key=True, max_length=64)  # SHA-256 hex of the cookie's token
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    user_agent: str = Field(default="", max_length=200)  # shown on the Account page
    ip: str = Field(default="", max_length=64)
    revoked_at: datetime | None = None


class SigninThrottle(SQLModel, table=True):
    """Failed sign-ins counted under one key: an address, an account, or both (hashed)."""

    __tablename__ = "signin_throttle"

    key: str = Field(primary_key=True, max_length=64)  # SHA-256 hex of "kind:value"
    failures: int = 0
    last_failure_at: datetime = Field(default_factory=utcnow)


class InstallStep(SQLModel, table=True):
    """A step of the installation done once, claimed by inserting its row (e.g. the first admin)."""

    __tablename__ = "install_step"

    name: str = Field(primary_key=True, max_length=40)
    done_at: datetime = Field(default_factory=utcnow)
