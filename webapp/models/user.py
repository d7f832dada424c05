"""Admins who log in, and the API tokens they issue."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from webapp.db import utcnow


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)  # stored lowercased
    password_hash: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None


class ApiToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    token_hash: str = Field(max_length=64, unique=True, index=True)  # SHA-256 hex of the token
    prefix: str = Field(max_length=16)  # shown in the list so tokens can be told apart
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
