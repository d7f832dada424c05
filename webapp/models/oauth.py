"""A pending OAuth authorization, kept server-side and keyed by its one-time state."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from webapp.db import utcnow


class OAuthAuthorization(SQLModel, table=True):
    __tablename__ = "oauth_authorization"

    id: int | None = Field(default=None, primary_key=True)
    state: str = Field(max_length=128, unique=True, index=True)
    mailbox_id: int = Field(foreign_key="mailbox.id", index=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    session_nonce: str = Field(max_length=128)  # also in the admin's session cookie
    code_verifier_enc: str  # PKCE verifier, encrypted like every secret
    token_url: str = Field(
        max_length=1000
    )  # taken from here at callback time, never from the query
    redirect_uri: str = Field(max_length=1000)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
