"""Tasks: the assignment email (real SMTP capture), replies fetched from the real Dovecot
into the task's history, "done" by mail, Process Task Replies off, the pages."""

from __future__ import annotations

import email as email_lib
import re
from datetime import date
from email import policy

import pytest
from sqlmodel import col, select

from tests.helpers.mailboxes import fetch, make_mailbox, update_mailbox
from tests.helpers.messages import email
from tests.helpers.web import csrf_from
from webapp.db import new_session, utcnow
from webapp.mail.parse import parse_message
from webapp.models import (
    Case,
    Mailbox,
    Message,
    OutboxMessage,
    RawMessage,
    RawMessageBody,
    Task,
    TaskEvent,
)
from webapp.models.mailbox import DEFAULT_MARKER
from webapp.services import tasks as task_service
from webapp.services.ingest import rows as ingest

ASSIGNEE = "bob@example.org"


@pytest.fixture
def desk(app_env, admin, dovecot, mail_user, smtp_server):
    """A mailbox that fetches from Dovecot, sends to the capture server, and one case on it."""
    box = make_mailbox(
        app_env, dovecot, mail_user, process_task_replies=True,
        smtp_host="127.0.0.1", smtp_port=smtp_server.port, smtp_security="none",
    )  # fmt: skip
    mail_user.deliver(email("Printer on fire", sender="alice@example.org", message_id="<p1@x>"))
    assert fetch(app_env, box)["new"] == 1
    with new_session(app_env["DATABASE_URL"]) as db:
        case = db.exec(select(Case)).one()
    return {"box": box, "case": case, "user": mail_user, "client": admin, "env": app_env}


def _form(client, case_id: int, **values) -> dict:
    token = csrf_from(client.get(f"/cases/{case_id}/tasks").get_data(as_text=True))
    data = {"csrf_token": token, "task-title": "Call the vendor",
            "task-assignee_email": ASSIGNEE, "task-due_date": "2030-01-31"}  # fmt: skip
    data.update(values)
    return data


def _add_task(desk, **values) -> Task:
    client, case = desk["client"], desk["case"]
    resp = client.post(f"/cases/{case.id}/tasks", data=_form(client, case.id, **values))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    with new_session(desk["env"]["DATABASE_URL"]) as db:
        return db.exec(select(Task).order_by(col(Task.id).desc())).first()


def _tasks(env) -> list[Task]:
    with new_session(env["DATABASE_URL"]) as db:
        return list(db.exec(select(Task).order_by(col(Task.id))).all())


def _events(env, task_id: int) -> list[TaskEvent]:
    with new_session(env["DATABASE_URL"]) as db:
        query = select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(col(TaskEvent.id))
        return list(db.exec(query).all())


def _kinds(env, task_id: int) -> list[str]:
    return [e.kind for e in _events(env, task_id)]


def _counts(env) -> tuple[int, int]:
    with new_session(env["DATABASE_URL"]) as db:
        return len(db.exec(select(Case)).all()), len(db.exec(select(Message)).all())


def _reply(desk, message_id: str, body: str, sender: str = ASSIGNEE, **headers) -> None:
    quoted = f"{DEFAULT_MARKER}\n\nYou have a new task on case [#1] Printer on fire\n"
    desk["user"].deliver(
        email(
            "Re: [#1] Task: Call the vendor",
            sender=sender,
            in_reply_to=headers.get("in_reply_to", message_id),
            references=headers.get("references"),
            body=f"{body}\n\nOn Mon, Bob's desk wrote:\n> {quoted}",
        )
    )
    assert fetch(desk["env"], desk["box"])["state"] == "ok"


def _sent_task(desk, run_worker, smtp_server, **values):
    """Add a task through the page and let the real worker send its email."""
    task = _add_task(desk, **values)
    run_worker()
    captured = smtp_server.wait_for(1)[-1]
    return task, captured, email_lib.message_from_bytes(captured.data, policy=policy.default)


def test_creating_a_task_emails_the_assignee_once(desk, run_worker, smtp_server):
    task, captured, msg = _sent_task(desk, run_worker, smtp_server)
    assert captured.rcpt_tos == [ASSIGNEE]
    assert msg["Subject"] == "[#1] Task: Call the vendor"
    body = msg.get_body(("plain",)).get_content()
    assert body.startswith(DEFAULT_MARKER)  # replies are cut above it
    assert "Call the vendor" in body
    assert "Due: 2030-01-31" in body
    assert '"done"' in body
    assert task.assignment_message_id == msg["Message-ID"].strip()
    assert task.title == "Call the vendor"
    assert task.assignee_email == ASSIGNEE
    assert str(task.due_date) == "2030-01-31"
    assert task.state == "open"
    assert _kinds(desk["env"], task.id) == ["created", "assigned_mail"]
    run_worker()  # nothing left to send: still one email
    assert len(smtp_server.messages) == 1
    with new_session(desk["env"]["DATABASE_URL"]) as db:
        row = db.exec(select(OutboxMessage)).one()
        assert row.kind == "task_assignment"
        assert row.state == "sent"
        assert row.case_id == desk["case"].id


def test_a_reply_goes_into_the_task_history_not_a_case(desk, run_worker, smtp_server):
    task, _, msg = _sent_task(desk, run_worker, smtp_server)
    before = _counts(desk["env"])
    _reply(desk, msg["Message-ID"], "Called them, they come Tuesday.")
    assert _counts(desk["env"]) == before  # no new case, no comment
    reply = _events(desk["env"], task.id)[-1]
    assert reply.kind == "reply"
    assert reply.text == "Called them, they come Tuesday."
    assert reply.author == ASSIGNEE
    assert _tasks(desk["env"])[0].state == "open"
    with new_session(desk["env"]["DATABASE_URL"]) as db:
        raw = db.get(RawMessage, reply.raw_message_id)
        assert raw.state == "done"
        assert raw.error is None
    page = desk["client"].get(f"/cases/{desk['case'].id}").get_data(as_text=True)
    assert "Called them, they come Tuesday." in page
    assert "case-tasks" in page


def test_a_reply_by_references_only_is_found_too(desk, run_worker, smtp_server):
    task, _, msg = _sent_task(desk, run_worker, smtp_server)
    _reply(desk, msg["Message-ID"], "Noted.", in_reply_to="<other@elsewhere>",
           references=f"{msg['Message-ID']} <other@elsewhere>")  # fmt: skip
    assert _kinds(desk["env"], task.id)[-1] == "reply"


def test_a_customer_answering_the_conversation_is_a_comment_not_a_task_reply(
    desk, run_worker, smtp_server
):
    """A comment's References may name the task email further up: the nearest parent decides."""
    task, _, msg = _sent_task(desk, run_worker, smtp_server)
    _, messages = _counts(desk["env"])
    desk["user"].deliver(
        email("Re: Printer on fire", sender="alice@example.org", in_reply_to="<p1@x>",
              references=f"{msg['Message-ID']} <p1@x>", body="done, thanks")
    )  # fmt: skip
    fetch(desk["env"], desk["box"])
    assert _kinds(desk["env"], task.id) == ["created", "assigned_mail"]
    assert _counts(desk["env"]) == (1, messages + 1)  # a comment on the case


def test_a_reply_saying_done_completes_the_task(desk, run_worker, smtp_server):
    task, _, msg = _sent_task(desk, run_worker, smtp_server)
    _reply(desk, msg["Message-ID"], "  DONE  \nThe vendor fixed it.")
    done = _tasks(desk["env"])[0]
    assert done.state == "done"
    assert done.completed_at is not None
    assert _kinds(desk["env"], task.id)[-2:] == ["reply", "completed"]
    page = desk["client"].get("/tasks").get_data(as_text=True)
    assert re.search(r"task-done", page)


def test_done_from_someone_else_is_a_note_only(desk, run_worker, smtp_server):
    task, _, msg = _sent_task(desk, run_worker, smtp_server)
    _reply(desk, msg["Message-ID"], "done", sender="mallory@evil.example")
    assert _tasks(desk["env"])[0].state == "open"
    assert _events(desk["env"], task.id)[-1].author == "mallory@evil.example"


def test_with_process_task_replies_off_a_reply_is_ordinary_mail(desk, run_worker, smtp_server):
    task, _, msg = _sent_task(desk, run_worker, smtp_server)
    update_mailbox(desk["env"], desk["box"], process_task_replies=False)
    cases, messages = _counts(desk["env"])
    _reply(desk, msg["Message-ID"], "done")
    assert _kinds(desk["env"], task.id) == ["created", "assigned_mail"]
    assert _tasks(desk["env"])[0].state == "open"
    with new_session(desk["env"]["DATABASE_URL"]) as db:
        raw = db.exec(select(RawMessage).order_by(col(RawMessage.id).desc())).first()
        filed = db.exec(select(Message).where(Message.raw_message_id == raw.id)).one()
        assert filed.text == "done"  # a comment or a new case, by the normal rules
    assert _counts(desk["env"])[1] == messages + 1
    assert _counts(desk["env"])[0] in (cases, cases + 1)


def test_reprocessing_adds_no_second_event(desk, run_worker, smtp_server):
    task, _, msg = _sent_task(desk, run_worker, smtp_server)
    _reply(desk, msg["Message-ID"], "done")
    env = desk["env"]
    kinds = _kinds(env, task.id)
    assert kinds == ["created", "assigned_mail", "reply", "completed"]
    raw_id = _events(env, task.id)[2].raw_message_id
    with new_session(env["DATABASE_URL"]) as db:
        assert ingest.reprocess(db, raw_id) == "done"  # done already: nothing to do
        # As if the row were processed again (a crash before the state was kept, a rerun).
        raw = db.get(RawMessage, raw_id)
        raw.state = "new"
        db.add(raw)
        db.commit()
        assert ingest.process_raw(db, raw_id) == "done"
        body = db.get(RawMessageBody, raw_id).data
        mailbox = db.get(Mailbox, desk["box"])
        assert task_service.route_task_reply(db, mailbox, parse_message(body), raw) is True
        db.commit()
    assert _kinds(env, task.id) == kinds
    fetch(env, desk["box"])  # and the mailbox fetched again
    assert _kinds(env, task.id) == kinds


def test_the_same_reply_stored_twice_is_one_event_per_raw_message(desk, run_worker, smtp_server):
    task, _, msg = _sent_task(desk, run_worker, smtp_server)
    _reply(desk, msg["Message-ID"], "First note")
    _reply(desk, msg["Message-ID"], "Second note")
    assert [e.text for e in _events(desk["env"], task.id) if e.kind == "reply"] == [
        "First note", "Second note",
    ]  # fmt: skip


def test_mark_done_and_reopen_from_the_page(desk):
    client = desk["client"]
    task = _add_task(desk)
    token = csrf_from(client.get(f"/cases/{desk['case'].id}/tasks").get_data(as_text=True))
    resp = client.post(f"/tasks/{task.id}/done", data={"csrf_token": token})
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(f"/cases/{desk['case'].id}")
    assert _tasks(desk["env"])[0].state == "done"
    # HTMX: the fragment alone comes back
    resp = client.post(
        f"/tasks/{task.id}/reopen", headers={"HX-Request": "true", "X-CSRFToken": token}
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "<html" not in html
    assert 'id="case-tasks"' in html
    assert "Mark done" in html
    assert _kinds(desk["env"], task.id)[-2:] == ["completed", "reopened"]
    client.post(f"/tasks/{task.id}/reopen", data={"csrf_token": token})  # open already: no event
    assert _kinds(desk["env"], task.id)[-1] == "reopened"
    assert _kinds(desk["env"], task.id).count("reopened") == 1


def test_a_bad_assignee_email_is_shown_next_to_the_field(desk):
    client, case = desk["client"], desk["case"]
    data = _form(
        client, case.id, **{"task-assignee_email": "bob at example", "task-title": "Fix <it>"}
    )
    resp = client.post(f"/cases/{case.id}/tasks", data=data)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    field = re.search(
        r'<div class="field has-error" id="field-task-assignee_email">.*?</div>', html, re.S
    )
    assert field
    assert "not a valid email address" in field.group(0)
    assert 'value="bob at example"' in field.group(0)
    assert 'value="Fix &lt;it&gt;"' in html
    assert 'value="2030-01-31"' in html  # typed values kept
    # HTMX: the fragment with the same errors, no page around it
    resp = client.post(f"/cases/{case.id}/tasks", data=data, headers={"HX-Request": "true"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "<html" not in html
    assert "not a valid email address" in html
    resp = client.post(
        f"/cases/{case.id}/tasks", data=_form(client, case.id, **{"task-title": " "})
    )
    assert resp.status_code == 422
    assert "Give the task a title." in resp.get_data(as_text=True)
    resp = client.post(
        f"/cases/{case.id}/tasks", data=_form(client, case.id, **{"task-due_date": "soon"})
    )
    assert resp.status_code == 422
    assert "Not a valid date value" in resp.get_data(as_text=True)
    assert _tasks(desk["env"]) == []


def test_htmx_create_returns_the_fragment_with_the_new_task(desk):
    client, case = desk["client"], desk["case"]
    resp = client.post(f"/cases/{case.id}/tasks", data=_form(client, case.id, **{"task-due_date": ""}),
                       headers={"HX-Request": "true"})  # fmt: skip
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "<html" not in html
    assert "Call the vendor" in html
    assert "is being emailed to bob@example.org" in html
    assert re.search(r"<input[^>]*name=\"task-title\"[^>]*value=\"\"", html)  # a fresh form
    assert _tasks(desk["env"])[0].due_date is None


def test_a_mailbox_without_smtp_says_so(desk):
    update_mailbox(desk["env"], desk["box"], smtp_host="")
    client, case = desk["client"], desk["case"]
    resp = client.post(
        f"/cases/{case.id}/tasks", data=_form(client, case.id), follow_redirects=True
    )
    assert "outgoing mail (SMTP) is not set up" in resp.get_data(as_text=True)


def test_login_and_csrf_are_required(desk, app):
    case = desk["case"]
    anonymous = app.test_client()
    for url in (f"/cases/{case.id}/tasks", "/tasks"):
        resp = anonymous.get(url)
        assert resp.status_code == 302
        assert "/auth/login" in resp.headers["Location"]
    data = {"task-title": "x", "task-assignee_email": ASSIGNEE}
    resp = anonymous.post(f"/cases/{case.id}/tasks", data=data)
    assert resp.status_code in (302, 400)
    resp = desk["client"].post(f"/cases/{case.id}/tasks", data=data)  # logged in, no token
    assert resp.status_code == 400
    task = _add_task(desk)
    assert desk["client"].post(f"/tasks/{task.id}/done").status_code == 400
    assert _tasks(desk["env"])[0].state == "open"
    assert len(_tasks(desk["env"])) == 1


def test_the_task_list_puts_open_first_and_pages(desk):
    env, case = desk["env"], desk["case"]
    with new_session(env["DATABASE_URL"]) as db:
        for i in range(60):
            db.add(Task(case_id=case.id, title=f"Bulk {i:02d}", assignee_email=f"p{i}@example.org",
                        state="done" if i % 2 else "open",
                        completed_at=utcnow() if i % 2 else None))  # fmt: skip
        db.commit()
    client = desk["client"]
    first = client.get("/tasks").get_data(as_text=True)
    assert "60 tasks" in first
    assert "page 1 of 2" in first
    assert "Tasks</a>" in first
    states = re.findall(r'class="badge task-(open|done)', first)
    assert len(states) == 50
    assert states[:30] == ["open"] * 30
    assert set(states[30:]) == {"done"}
    assert f'href="/cases/{case.id}"' in first
    assert "p0@example.org" in first
    second = client.get("/tasks?page=2").get_data(as_text=True)
    assert len(re.findall(r'class="badge task-done', second)) == 10
    assert "Previous" in second
    assert client.get("/tasks?page=x").status_code == 200


def test_the_case_page_shows_the_task_form(desk):
    html = desk["client"].get(f"/cases/{desk['case'].id}").get_data(as_text=True)
    for label in ("Title", "Assignee email", "Due date"):
        assert f">{label}</label>" in html
    assert f'action="/cases/{desk["case"].id}/tasks"' in html
    assert "hx-post" in html


def test_task_replies_on_each_database(any_db):
    with new_session(any_db) as db:
        box = Mailbox(name="Any", email_address="desk@example.com", email_key="desk@example.com",
                      process_task_replies=True)  # fmt: skip
        db.add(box)
        db.flush()
        case = Case(number=7, subject="Broken", mailbox_id=box.id)
        db.add(case)
        db.commit()
        task = task_service.create_task(db, case, title="Fix", assignee_email="Bob@Example.org")
        task_service.create_task(
            db, case, title="Later", assignee_email=ASSIGNEE, due_date=date(2030, 1, 1)
        )
        assert task.assignment_message_id
        assert task_service.assignment_email(db, task).kind == ("task_assignment")
        raw = RawMessage(mailbox_id=box.id, sha256="a" * 64)
        db.add(raw)
        db.commit()
        reply = email("Re: [#7] Task: Fix", sender=ASSIGNEE, body="Done.\n",
                      in_reply_to=task.assignment_message_id)  # fmt: skip
        parsed = parse_message(reply)
        assert task_service.route_task_reply(db, box, parsed, raw)
        assert task_service.route_task_reply(db, box, parsed, raw)  # again: nothing added
        db.commit()
        assert [e.kind for e in task_service.tasks_of_case(db, case.id)[1][1]] == [
            "created", "assigned_mail", "reply", "completed",
        ]  # fmt: skip
        assert db.get(Task, task.id).state == "done"
        rows, total = task_service.task_page(db, 1)
        assert total == 2
        assert [t.title for t, _ in rows] == ["Later", "Fix"]
        box.process_task_replies = False
        assert task_service.route_task_reply(db, box, parsed, raw) is False
