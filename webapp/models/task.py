"""Tasks on a case, assigned by email, and their history (TaskEvent)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel, UniqueConstraint

from webapp.db import utcnow

# Task.state
OPEN = "open"
DONE = "done"
STATES = (OPEN, DONE)

# TaskEvent.kind
CREATED = "created"
ASSIGNED_MAIL = "assigned_mail"  # the assignment email was queued (or could not be)
REPLY = "reply"  # the assignee answered the assignment email
COMPLETED = "completed"
REOPENED = "reopened"
KINDS = (CREATED, ASSIGNED_MAIL, REPLY, COMPLETED, REOPENED)


def _fk(target: str, ondelete: str, nullable: bool = True, index: bool = True) -> Column:
    return Column(Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


class Task(SQLModel, table=True):
    """Something one person has to do for a case; replies to its email land in its history."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(sa_column=_fk("case.id", "CASCADE", nullable=False))
    title: str = Field(max_length=300)
    assignee_email: str = Field(max_length=320)
    due_date: date | None = None
    state: str = Field(default=OPEN, max_length=8, index=True)  # open | done
    created_by: int | None = Field(default=None, sa_column=_fk("user.id", "SET NULL", index=False))
    # The Message-ID of the assignment email: a reply naming it in In-Reply-To or
    # References answers this task.
    assignment_message_id: str | None = Field(default=None, max_length=998, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None


class TaskEvent(SQLModel, table=True):
    """One line of a task's history."""

    __tablename__ = "task_event"
    # A raw message adds at most one event to a task, however often it is processed.
    __table_args__ = (
        UniqueConstraint("task_id", "raw_message_id", name="uq_task_event_raw_message"),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(sa_column=_fk("task.id", "CASCADE", nullable=False))
    kind: str = Field(max_length=16)  # created | assigned_mail | reply | completed | reopened
    text: str = Field(default="")
    author: str = Field(default="", max_length=320)  # an agent's or the replier's address
    raw_message_id: int | None = Field(
        default=None, sa_column=_fk("raw_message.id", "SET NULL", index=False)
    )
    created_at: datetime = Field(default_factory=utcnow)
