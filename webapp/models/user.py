"""The team who log in (admins and agents), and the API tokens admins issue."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from webapp.db import utcnow

ADMIN = "admin"
AGENT = "agent"
ROLES = {ADMIN: "Admin", AGENT: "Agent"}


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)  # stored lowercased
    password_hash: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
    name: str = Field(default="", max_length=200)  # agent_name in email templates
    role: str = Field(default=ADMIN, max_length=16)  # admin | agent
    active: bool = True  # a deactivated user cannot sign in and is signed out at once

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def display_name(self) -> str:
        return self.name or self.email.split("@")[0]


class ApiToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    token_hash: str = Field(max_length=64, unique=True, index=True)  # SHA-256 hex of the token
    prefix: str = Field(max_length=16)  # shown in the list so tokens can be told apart
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
