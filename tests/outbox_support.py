"""Helpers for the outgoing mail tests: a mailbox that fetches from Dovecot and sends to aiosmtpd."""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage

from sqlmodel import col, select

from tests.conftest import csrf_from
from tests.fetch_support import email as make_email
from tests.fetch_support import fetch, make_mailbox
from webapp.db import new_session
from webapp.models import Case, Message, OutboxMessage

CASE_RESPONSE_TEMPLATE = 1  # the defaults every fresh install has (migration 0001)
AUTO_ACK_TEMPLATE = 2
MARKER = "##- Please type your reply above this line -##"


def smtp_fields(smtp_server) -> dict:
    """Outgoing mail to the capturing server: no TLS, accepted because it is on 127.0.0.1."""
    return {"smtp_host": smtp_server.host, "smtp_port": smtp_server.port, "smtp_security": "none"}


def desk(env: dict, dovecot, user, smtp_server, **fields) -> int:
    """A set-up mailbox past its first fetch (new mail is not backlog) that sends to smtp_server."""
    values = {"initial_fetch_done": True, "name": "Support", **smtp_fields(smtp_server)}
    values.update(fields)
    return make_mailbox(env, dovecot, user, **values)


def open_case(env: dict, box: int, user, subject: str = "Printer jammed", **kwargs) -> Case:
    """Deliver one email to the mailbox, fetch it, return the case it opened."""
    kwargs.setdefault("sender", "Ada Lovelace <ada@example.org>")
    user.deliver(make_email(subject, to=user.email, **kwargs))
    result = fetch(env, box)
    assert result["state"] == "ok", result
    with new_session(env["DATABASE_URL"]) as db:
        return db.exec(select(Case).order_by(col(Case.id).desc())).first()


def rows(env: dict, **where) -> list[OutboxMessage]:
    with new_session(env["DATABASE_URL"]) as db:
        query = select(OutboxMessage).order_by(col(OutboxMessage.id))
        for name, value in where.items():
            query = query.where(getattr(OutboxMessage, name) == value)
        return list(db.exec(query).all())


def conversation(env: dict, case_id: int) -> list[Message]:
    with new_session(env["DATABASE_URL"]) as db:
        query = select(Message).where(Message.case_id == case_id).order_by(col(Message.id))
        return list(db.exec(query).all())


def send_due(run_worker) -> None:
    """What the scheduler's outbox tick and a worker do: enqueue due rows, send them."""
    from worker.jobs import dispatch_outbox

    dispatch_outbox()
    run_worker()


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)


def text_body(msg: EmailMessage) -> str:
    """The plain text part with \\n line ends (a quoted-printable body keeps the wire's CRLF)."""
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")


def first_text_line(msg: EmailMessage) -> str:
    return text_body(msg).splitlines()[0]


def case_page(client, case_id: int) -> str:
    resp = client.get(f"/cases/{case_id}")
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def comment(client, case_id: int, text: str, *, key: str | None = None, htmx: bool = False):
    """Post the comment form as the case page renders it (its key unless one is given)."""
    page = case_page(client, case_id)
    data = {"csrf_token": csrf_from(page), "comment": text, "next": f"/cases/{case_id}"}
    data["key"] = key or _field(page, "key")
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(f"/cases/{case_id}/comments", data=data, headers=headers)


def _field(page: str, name: str) -> str:
    match = re.search(r'name="' + name + r'" value="([^"]*)"', page)
    assert match, f"no {name} field in the page"
    return match.group(1)
