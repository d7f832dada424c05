"""Tasks on a case: assign one by email, follow the assignee's replies, complete it.

The assignment email is queued in the outbox (outbox.enqueue, as notify does), which
puts the case token in the subject and the mailbox's End of Message Marker on top; its
Message-ID is kept on the task. When the mailbox's Process Task Replies option is on, a
reply naming that Message-ID in In-Reply-To or References becomes a line of the task's
history instead of a case or a comment, and a reply whose first line is "done" (from
the assignee) completes the task."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from webapp.db import insert_ignore, utcnow
from webapp.mail.parse import ParsedMessage
from webapp.mail.reply import extract_reply
from webapp.mail.thread import capped_ids, nearest_first, subject_with_token
from webapp.models import (
    Case,
    Mailbox,
    Message,
    OutboxMessage,
    RawMessage,
    Task,
    TaskEvent,
    User,
)
from webapp.models import task as kinds
from webapp.models.contact import email_key
from webapp.services.outgoing import outbox

ASSIGNMENT_KIND = "task_assignment"  # OutboxMessage.kind of the assignment email


# -- creating and changing tasks -------------------------------------------------------


def create_task(
    db: Session,
    case: Case,
    *,
    title: str,
    assignee_email: str,
    due_date: date | None = None,
    created_by: User | None = None,
) -> Task:
    """Add a task to the case and queue the assignment email to the assignee; commits."""
    author = created_by.email if created_by else ""
    task = Task(
        case_id=case.id,
        title=" ".join(title.split())[:300],
        assignee_email=assignee_email.strip()[:320],
        due_date=due_date,
        created_by=created_by.id if created_by else None,
    )
    db.add(task)
    db.flush()
    add_event(db, task, kinds.CREATED, f"Assigned to {task.assignee_email}.", author)
    mailbox = db.get(Mailbox, case.mailbox_id) if case.mailbox_id else None
    if mailbox is None:
        note = "No email was sent: the case has no mailbox to send from."
    else:
        task.assignment_message_id = _send_assignment(db, mailbox, case, task)
        db.add(task)
        note = f"Assignment email queued to {task.assignee_email}."
    add_event(db, task, kinds.ASSIGNED_MAIL, note, author)
    db.commit()
    return task


def _send_assignment(db: Session, mailbox: Mailbox, case: Case, task: Task) -> str:
    """Queue the assignment email (the outbox adds the marker on top); its Message-ID."""
    row = outbox.enqueue(
        db,
        mailbox,
        to_addr=task.assignee_email,
        to_name="",
        subject=assignment_subject(case, task),
        text=assignment_text(mailbox, case, task),
        kind=ASSIGNMENT_KIND,
        case_id=case.id,
        idempotency_key=assignment_key(task.id),
    )
    return row.message_id


def assignment_key(task_id: int) -> str:
    """The outbox idempotency key of a task's assignment email."""
    return f"{ASSIGNMENT_KIND}:{task_id}"


def assignment_email(db: Session, task: Task) -> OutboxMessage | None:
    """The outbox row of the task's assignment email, if one was queued."""
    return outbox.by_key(db, assignment_key(task.id))


def assignment_subject(case: Case, task: Task) -> str:
    """[#12] Task: <title>: the case token keeps the thread on its case."""
    return subject_with_token(f"Task: {task.title}", case.number)


def assignment_text(mailbox: Mailbox, case: Case, task: Task) -> str:
    """The body under the marker: the task, and how to answer it."""
    lines = [
        f"You have a new task on case [#{case.number}] {case.subject}".rstrip(),
        "",
        f"Task: {task.title}",
    ]
    if task.due_date:
        lines.append(f"Due: {task.due_date.isoformat()}")
    if mailbox.process_task_replies:
        lines += [
            "",
            "Reply to this email to add a note to the task.",
            'Reply with "done" on the first line when the task is complete.',
        ]
    return "\n".join(lines) + "\n"


def complete_task(db: Session, task: Task, author: str = "", text: str = "") -> bool:
    """Mark an open task done (flushed); False when it was done already."""
    now = utcnow()
    changed = db.exec(
        update(Task)
        .where(col(Task.id) == task.id, col(Task.state) == kinds.OPEN)
        .values(state=kinds.DONE, completed_at=now)
    ).rowcount
    if changed != 1:
        return False
    add_event(db, task, kinds.COMPLETED, text, author)
    db.flush()
    db.refresh(task)
    return True


def reopen_task(db: Session, task: Task, author: str = "") -> bool:
    """Open a done task again (flushed); False when it was open."""
    changed = db.exec(
        update(Task)
        .where(col(Task.id) == task.id, col(Task.state) == kinds.DONE)
        .values(state=kinds.OPEN, completed_at=None)
    ).rowcount
    if changed != 1:
        return False
    add_event(db, task, kinds.REOPENED, "", author)
    db.flush()
    db.refresh(task)
    return True


def add_event(db: Session, task: Task, kind: str, text: str = "", author: str = "") -> TaskEvent:
    event = TaskEvent(task_id=task.id, kind=kind, text=text, author=author[:320])
    db.add(event)
    db.flush()
    return event


# -- replies by email ------------------------------------------------------------------


def route_task_reply(
    db: Session, mailbox: Mailbox, parsed: ParsedMessage, raw_message: RawMessage
) -> bool:
    """Put a reply to a task-assignment email into the task's history (flushed, not committed).

    True: the message was a task reply and must become no case and no comment (also when
    this raw message was recorded before). False: ordinary mail, because Process Task
    Replies is off for this mailbox or the message answers none of our task emails.
    """
    if not mailbox.process_task_replies:
        return False
    task = answered_task(db, parsed)
    if task is None:
        return False
    text = extract_reply(parsed.text, mailbox.end_of_message_marker)
    sender = email_key(parsed.from_addr)
    table = TaskEvent.__table__
    added = db.exec(
        insert_ignore(db, table)
        .values(
            task_id=task.id,
            kind=kinds.REPLY,
            text=text,
            author=sender[:320],
            raw_message_id=raw_message.id,
            created_at=utcnow(),
        )
        .returning(table.c.id)
    ).first()
    # RETURNING, not rowcount: PostgreSQL drivers report -1 for INSERT … ON CONFLICT.
    if added is None:
        return True  # this raw message was processed before: its reply is in the history
    db.exec(update(Case).where(col(Case.id) == task.case_id).values(updated_at=utcnow()))
    # Anyone holding the email may add a note; only the assignee closes the task by mail.
    if says_done(text) and sender == email_key(task.assignee_email):
        complete_task(db, task, sender, "Completed by an email reply.")
    return True


def answered_task(db: Session, parsed: ParsedMessage) -> Task | None:
    """The task whose assignment email this message answers, walking from the nearest parent.

    A message answering the case's conversation (a comment we sent, a message we filed)
    is not a task reply, even when its References also name a task email further up.
    """
    ids = capped_ids(i for i in nearest_first(parsed) if i)
    if not ids:
        return None
    tasks = db.exec(select(Task).where(col(Task.assignment_message_id).in_(ids))).all()
    if not tasks:
        return None
    by_id = {task.assignment_message_id: task for task in tasks}
    conversation = set(
        db.exec(select(Message.message_id).where(col(Message.message_id).in_(ids))).all()
    ) | set(
        db.exec(
            select(OutboxMessage.message_id).where(
                col(OutboxMessage.message_id).in_(ids), OutboxMessage.kind != ASSIGNMENT_KIND
            )
        ).all()
    )
    for message_id in ids:
        if message_id in by_id:
            return by_id[message_id]
        if message_id in conversation:
            return None
    return None


def says_done(text: str) -> bool:
    """The reply's first line is "done" (any case; a full stop or "!" after it is fine)."""
    first = (text or "").strip().split("\n", 1)[0]
    return first.strip().rstrip(".!").strip().casefold() == "done"


# -- reading ---------------------------------------------------------------------------


def tasks_of_case(db: Session, case_id: int) -> list[tuple[Task, list[TaskEvent]]]:
    """The case's tasks, open first then newest first, each with its history (oldest first)."""
    tasks = db.exec(
        select(Task)
        .where(Task.case_id == case_id)
        .order_by(col(Task.state) != kinds.OPEN, col(Task.id).desc())
    ).all()
    if not tasks:
        return []
    events = db.exec(
        select(TaskEvent)
        .where(col(TaskEvent.task_id).in_([t.id for t in tasks]))
        .order_by(col(TaskEvent.id))
    ).all()
    history: dict[int, list[TaskEvent]] = {t.id: [] for t in tasks}
    for event in events:
        history[event.task_id].append(event)
    return [(task, history[task.id]) for task in tasks]


def task_page(db: Session, page: int, per_page: int = 50) -> tuple[list[tuple[Task, Case]], int]:
    """One page of all tasks with their cases: open first, by due date, then newest; and the total."""
    total = db.exec(select(func.count()).select_from(Task)).one()
    rows = db.exec(
        select(Task, Case)
        .join(Case, col(Case.id) == col(Task.case_id))
        .order_by(
            col(Task.state) != kinds.OPEN,
            col(Task.due_date).is_(None),
            col(Task.due_date),
            col(Task.id).desc(),
        )
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(rows), total
