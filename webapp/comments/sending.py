"""What the reply box of a case page needs to know about sending: whether the case's mailbox
can send now (services.outgoing.readiness), whom an agent asks to fix it, and the outgoing
email each comment in the thread became."""

from __future__ import annotations

from flask import g

from webapp.models import Mailbox, OutboxMessage
from webapp.services.access import users
from webapp.services.outgoing import readiness


def reply_context(mailbox: Mailbox | None) -> dict:
    """`send_problem` (None when the mailbox can send) and, for an agent, `admins` to ask."""
    problem = readiness.send_problem(g.db, mailbox)
    admins = users.admin_emails(g.db) if problem and not g.user.is_admin else []
    return {"send_problem": problem, "send_mailbox": mailbox, "admins": admins}


def sends_by_message(rows: list[OutboxMessage]) -> dict[int, OutboxMessage]:
    """The outgoing email each comment of the conversation became, by the comment's message id."""
    return {row.case_message_id: row for row in rows if row.case_message_id}
