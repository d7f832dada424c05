"""Email templates that the Case Response and Auto Acknowledgement settings pick from."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from webapp.db import utcnow


class EmailTemplate(SQLModel, table=True):
    __tablename__ = "email_template"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    kind: str = Field(default="case_response", max_length=32)  # case_response | auto_ack | other
    subject: str = Field(default="", max_length=500)
    body: str = Field(default="")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
