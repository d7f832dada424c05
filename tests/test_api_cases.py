"""GET /api/v1/cases and /api/v1/contacts, and the message counts of /api/v1/mailboxes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import select

from tests.helpers.databases import (
    COVERED,
    count_statements,
    fresh_database,
    migrate,
    postgres_answers,
)
from tests.helpers.mailboxes import desk, make_mailbox, open_case
from tests.helpers.messages import email, html_email
from tests.helpers.rows import bulk_cases
from tests.helpers.web import change_status, csrf_from, fetch_now
from webapp.db import get_engine, new_session
from webapp.models import Attachment, Mailbox, Message
from webapp.services import case_queries
from webapp.services.access import users


@pytest.fixture
def api(app, client):
    """GET an API path with a fresh bearer token."""
    with new_session(app.config["SETTINGS"].database_url) as db:
        _, token = users.create_token(db, "tests")

    def get(path: str):
        resp = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.get_json()

    return get


def test_without_a_valid_token_cases_and_contacts_answer_401(client):
    for path in ("/api/v1/cases", "/api/v1/contacts"):
        assert client.get(path).status_code == 401
        resp = client.get(path, headers={"Authorization": "Bearer wrong"})
        assert resp.status_code == 401
        assert "Bearer" in resp.headers["WWW-Authenticate"]


def test_cases_with_their_messages_and_attachments(
    admin, api, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(
        email(
            "Printer on fire",
            sender="Alice Smith <alice@example.org>",
            message_id="<a1@x>",
            body="It burns.\n",
        )
    )
    mail_user.deliver(
        email(
            "Re: Printer on fire",
            sender="alice@example.org",
            message_id="<a2@x>",
            in_reply_to="<a1@x>",
            body="Still.\n\n> It burns.\n",
        )
    )
    mail_user.deliver(html_email("With files", sender="Bob <bob@example.org>"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch_now(admin, box, run_worker)

    body = api("/api/v1/cases")
    assert body["total"] == 2
    assert body["page"] == 1
    assert body["per_page"] == 50
    printer, files = body["items"]
    assert printer["number"] == 1
    assert printer["subject"] == "Printer on fire"
    assert printer["status"] == "open"
    assert printer["mailbox_id"] == box
    assert printer["contact"]["name"] == "Alice Smith"
    assert printer["contact"]["email"] == "alice@example.org"
    assert printer["created_at"].endswith("+00:00")
    assert printer["updated_at"]
    first, reply = printer["messages"]
    assert first["message_id"] == "<a1@x>"
    assert reply["message_id"] == "<a2@x>"
    assert first["sender"] == {"name": "Alice Smith", "email": "alice@example.org"}
    assert first["subject"] == "Printer on fire"
    assert first["text"].strip() == "It burns."
    assert first["date"]
    assert first["attachments"] == []
    assert first["attachments_not_kept"] == []
    assert reply["text"].strip() == "Still."
    assert "> It burns." in reply["full_text"]

    (message,) = files["messages"]
    assert message["message_id"] == "<html1@test.example>"
    assert {"name": "invoice.pdf", "size": 13, "content_type": "application/pdf"} in message[
        "attachments"
    ]
    assert {a["name"] for a in message["attachments"]} == {"invoice.pdf", "logo.png"}
    assert "html" not in message
    assert "<script" not in str(body)

    assert api("/api/v1/cases?status=closed")["total"] == 0
    assert api(f"/api/v1/cases?mailbox_id={box}")["total"] == 2

    contacts = api("/api/v1/contacts")
    assert contacts["total"] == 2
    by_email = {c["email"]: c for c in contacts["items"]}
    assert by_email["alice@example.org"]["name"] == "Alice Smith"
    assert by_email["alice@example.org"]["cases"] == 1
    assert by_email["bob@example.org"]["cases"] == 1


def test_attachments_not_kept_come_with_their_reason(
    admin, api, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(html_email("Nothing kept"))
    box = make_mailbox(app_env, dovecot, mail_user, keep_attachments=False)
    fetch_now(admin, box, run_worker)
    (message,) = api("/api/v1/cases")["items"][0]["messages"]
    assert message["attachments"] == []
    not_kept = {a["name"]: a for a in message["attachments_not_kept"]}
    assert set(not_kept) == {"invoice.pdf", "logo.png"}
    assert not_kept["invoice.pdf"]["size"] == 13
    assert not_kept["invoice.pdf"]["content_type"] == "application/pdf"
    assert "does not keep attachments" in not_kept["invoice.pdf"]["reason"]


def test_mailboxes_count_fetched_and_failed_messages(
    admin, api, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(email("Fine"))
    mail_user.deliver(email("Too big", body="b" * 20_000 + "\n"))
    box = make_mailbox(app_env, dovecot, mail_user, max_message_bytes=10_000)
    empty = make_mailbox(app_env, dovecot, dovecot.new_user())
    fetch_now(admin, box, run_worker)
    items = {m["id"]: m for m in api("/api/v1/mailboxes")["items"]}
    assert items[box]["messages_fetched"] == 2
    assert items[box]["messages_failed"] == 1
    assert items[empty]["messages_fetched"] == 0
    assert items[empty]["messages_failed"] == 0


def test_a_message_in_the_api_has_every_field(api, app_env):
    bulk_cases(app_env["DATABASE_URL"], 10)
    sent = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    with new_session(app_env["DATABASE_URL"]) as db:
        message = db.exec(select(Message).where(Message.case_id == 1)).one()
        fields = dict(direction="out", from_name="Ann", from_address="ann@acme.example",
                      to_addresses="bob@example.org", cc_addresses="cy@example.org",
                      sent_at=sent, received_at=sent, subject="Re: Hello", text="Hi",
                      full_text="Hi\n> Hello", in_reply_to="<h@x>", automated="Auto-Submitted")  # fmt: skip
        for name, value in fields.items():
            setattr(message, name, value)
        db.add(message)
        db.commit()
        message_id = message.id
    (shown,) = api("/api/v1/cases")["items"][0]["messages"]
    assert shown == {
        "id": message_id,
        "direction": "out",
        "sender": {"name": "Ann", "email": "ann@acme.example"},
        "to": "bob@example.org",
        "cc": "cy@example.org",
        "date": "2026-03-01T09:30:00+00:00",
        "received_at": "2026-03-01T09:30:00+00:00",
        "subject": "Re: Hello",
        "text": "Hi",
        "full_text": "Hi\n> Hello",
        "message_id": "<bulk1@x>",
        "in_reply_to": "<h@x>",
        "automated": "Auto-Submitted",
        "attachments": [],
        "attachments_not_kept": [],
    }


def test_a_message_filed_while_a_page_is_read_leaves_the_page_whole(app_env):
    """The API reads a page's messages, then their attachments by case: an attachment of a
    message filed in between is not one of the page's (and breaks nothing)."""
    url = app_env["DATABASE_URL"]
    bulk_cases(url, 10)
    with new_session(url) as db:
        (read,) = db.exec(select(Message.id).where(Message.case_id == 1)).all()
        later = Message(case_id=1, subject="Later", text="filed meanwhile")
        db.add(later)
        db.flush()
        db.add_all(
            Attachment(message_id=m, filename=f"{m}.pdf", size=3, data=b"pdf")
            for m in (read, later.id)
        )
        db.commit()
        files = case_queries.attachments_by_message(db, [read], [1])
    assert list(files) == [read]
    assert [a.name for a in files[read].kept] == [f"{read}.pdf"]


def test_100000_cases_page_by_page_with_a_fixed_number_of_queries(api, app_env):
    with new_session(app_env["DATABASE_URL"]) as db:
        box = Mailbox(name="Bulk", email_address="bulk@example.com", email_key="bulk@example.com")
        db.add(box)
        db.commit()
        box_id = box.id
    bulk_cases(app_env["DATABASE_URL"], 100_000, box_id)

    with count_statements(app_env["DATABASE_URL"]) as first:
        page = api("/api/v1/cases")
    assert page["total"] == 100_000
    assert len(page["items"]) == 50
    assert [c["number"] for c in page["items"]] == list(range(1, 51))
    assert page["items"][0]["messages"][0]["message_id"] == "<bulk1@x>"
    assert page["items"][0]["contact"]["email"] == "c1@bulk.example"
    # token check (and its last-used update, at most once a minute), count, cases, messages,
    # attachments, the mailboxes they came through, their history
    assert len(first) <= 8, first

    with count_statements(app_env["DATABASE_URL"]) as last:
        page = api("/api/v1/cases?page=2000")
    assert [c["number"] for c in page["items"]] == list(range(99_951, 100_001))
    assert all(len(c["messages"]) == 1 for c in page["items"])
    assert len(last) == len(first) - 1  # the token's last use was written a moment ago
    assert api("/api/v1/cases?page=2001")["items"] == []

    with count_statements(app_env["DATABASE_URL"]) as contacts:
        page = api("/api/v1/contacts?page=200")
    assert page["total"] == 10_000
    assert len(page["items"]) == 50
    assert page["items"][-1]["email"] == "c9999@bulk.example"
    assert page["items"][-1]["cases"] == 10
    assert len(contacts) <= 6, contacts


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_answers(), reason="no PostgreSQL answers on 127.0.0.1:5432")
def test_100000_cases_on_postgresql(app_env, monkeypatch):
    """Production runs PostgreSQL: the same pages, the same few queries."""
    from webapp import create_app

    with fresh_database() as url:
        migrate(url)
        monkeypatch.setenv("DATABASE_URL", url)
        app = create_app({"TESTING": True})
        client = app.test_client()
        with new_session(url) as db:
            users.create_user(db, "pg@example.com", "a long enough password")
            _, token = users.create_token(db, "pg")
        bulk_cases(url, 100_000)
        login = csrf_from(client.get("/auth/login").get_data(as_text=True))
        client.post(
            "/auth/login",
            data={
                "csrf_token": login,
                "email": "pg@example.com",
                "password": "a long enough password",
            },
        )
        client.get("/cases/")  # the first count after 100,000 new cases folds their tally
        with count_statements(url) as ui:
            page = client.get("/cases/?page=2000").get_data(as_text=True)
        assert page.count('<tr id="case-') == 50
        assert '">#1</a></td>' in page
        assert len(ui) <= 6
        with count_statements(url) as api_statements:
            body = client.get(
                "/api/v1/cases?page=2000", headers={"Authorization": f"Bearer {token}"}
            ).get_json()
        assert body["total"] == 100_000
        assert body["items"][-1]["number"] == 100_000
        assert len(api_statements) <= 8
        body = client.get(
            "/api/v1/contacts?page=200", headers={"Authorization": f"Bearer {token}"}
        ).get_json()
        assert body["items"][-1]["cases"] == 10
        get_engine(url).dispose()
    COVERED.add("PostgreSQL")


def test_a_case_closed_on_the_case_page_is_closed_in_the_api(
    admin, api, app_env, dovecot, mail_user, smtp_server
):
    box = desk(app_env, dovecot, mail_user, smtp_server)
    first = open_case(app_env, box, mail_user, subject="Printer jammed")
    second = open_case(app_env, box, mail_user, subject="Scanner broken")
    change_status(admin, first.id, "close")
    closed = api("/api/v1/cases?status=closed")["items"]
    still_open = api("/api/v1/cases?status=open")["items"]
    assert [(c["number"], c["status"]) for c in closed] == [(first.number, "closed")]
    assert [(c["number"], c["status"]) for c in still_open] == [(second.number, "open")]
