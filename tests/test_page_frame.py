"""What every page shares: the marked menu item, 404 and 500 pages in the app's layout, times
relative with the exact time on hover, the first admin's Name, one filter bar."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlmodel import select

from tests.helpers.team import agent
from tests.helpers.web import ADMIN_PASSWORD, csrf_from
from webapp.db import new_session, utcnow
from webapp.filters import when
from webapp.models import Mailbox, OutboxMessage, User


def test_the_current_menu_item_is_marked(admin):
    page = admin.get("/outbox/").get_data(as_text=True)
    assert re.findall(r'<a href="[^"]*" aria-current="page">([^<]+)</a>', page)[0] == "Outbox"


def test_an_unknown_address_gets_a_404_page_in_the_layout(admin):
    resp = admin.get("/cases/999999")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 404
    assert "This page does not exist" in page
    assert 'class="menu"' in page


def test_a_server_error_page_needs_no_database(app_env, monkeypatch, tmp_path):
    from webapp import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/missing/dir/db.sqlite")
    app = create_app({"TESTING": True})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    resp = app.test_client().get("/cases/")
    assert resp.status_code == 500
    assert "Something went wrong on our side" in resp.get_data(as_text=True)


def test_a_time_reads_relative_with_the_exact_time_on_hover():
    html = str(when(utcnow().replace(tzinfo=None) - timedelta(minutes=3)))
    assert ">3 minutes ago</time>" in html
    assert re.search(r'title="\d{4}-\d\d-\d\d \d\d:\d\d UTC"', html)


def test_the_first_admin_has_a_name(client, app_env):
    token = csrf_from(client.get("/auth/first-admin").get_data(as_text=True))
    data = {"csrf_token": token, "email": "ada@example.com", "name": "Ada Lovelace",
            "password": ADMIN_PASSWORD, "password2": ADMIN_PASSWORD}  # fmt: skip
    assert client.post("/auth/first-admin", data=data).status_code == 302
    with new_session(app_env["DATABASE_URL"]) as db:
        assert db.exec(select(User.name)).one() == "Ada Lovelace"


def _outbox_row(app_env) -> int:
    with new_session(app_env["DATABASE_URL"]) as db:
        box = Mailbox(name="Support", email_address="s@example.com", email_key="s@example.com")
        db.add(box)
        db.commit()
        db.add(OutboxMessage(idempotency_key="k", mailbox_id=box.id, to_addr="a@example.org",
                             to_key="a@example.org", subject="Hello", message_id="<m1@example.com>",
                             raw=b"x", state="failed", last_error="The login was refused."))  # fmt: skip
        db.commit()
        return box.id


def test_the_outbox_links_the_mailbox_to_its_settings_for_an_admin(admin, app_env):
    box = _outbox_row(app_env)
    page = admin.get("/outbox/").get_data(as_text=True)
    assert f'href="/mailboxes/{box}/edit#outgoing-mail"' in page


def test_the_outbox_names_the_mailbox_without_a_link_for_an_agent(app, admin, app_env):
    box = _outbox_row(app_env)
    page = agent(app, admin).get("/outbox/").get_data(as_text=True)
    assert "from Support" in page
    assert f"/mailboxes/{box}/edit" not in page


def test_the_outbox_shows_the_error_text_and_the_message_id_on_hover(admin, app_env):
    _outbox_row(app_env)
    page = admin.get("/outbox/").get_data(as_text=True)
    assert 'title="Message-ID: &lt;m1@example.com&gt;"' in page
    assert "The login was refused." in page


def test_cases_held_and_outbox_share_one_filter_bar(admin):
    for url in ("/cases/", "/held", "/outbox/"):
        page = admin.get(url).get_data(as_text=True)
        assert re.search(r'<nav class="filters"[^>]*>\s*<ul class="pills">', page), url
