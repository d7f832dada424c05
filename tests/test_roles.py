"""Roles: an agent works cases, comments, contacts, tasks, the outbox and held mail; mailboxes,
email templates, API tokens, users and the audit log answer 403 and say whom to ask."""

from __future__ import annotations

import re

import pytest

from tests.helpers.team import AGENT_EMAIL, agent, post_user_form, user_row
from tests.helpers.web import ADMIN_EMAIL, api_token, csrf_from

# (method, path, what the page says only an admin can do): one or more routes of each blueprint
ADMIN_ROUTES = [
    ("GET", "/mailboxes/", "manage mailboxes"),
    ("GET", "/mailboxes/new", "manage mailboxes"),
    ("POST", "/mailboxes/new", "manage mailboxes"),
    ("GET", "/mailboxes/1", "manage mailboxes"),
    ("POST", "/mailboxes/1/delete", "manage mailboxes"),
    ("POST", "/mailboxes/1/authorize", "manage mailboxes"),
    ("GET", "/oauth/callback?state=s&code=c", "manage mailboxes"),
    ("GET", "/templates/", "manage email templates"),
    ("GET", "/templates/1", "manage email templates"),
    ("POST", "/templates/preview", "manage email templates"),
    ("GET", "/tokens", "manage API tokens"),
    ("POST", "/tokens", "manage API tokens"),
    ("POST", "/tokens/1/revoke", "manage API tokens"),
    ("GET", "/users/", "manage users"),
    ("POST", "/users/", "manage users"),
    ("POST", "/users/1/role", "manage users"),
    ("POST", "/users/1/active", "manage users"),
    ("GET", "/audit/", "read the audit log"),
]
AGENT_PAGES = ["/cases/", "/contacts/", "/tasks", "/held", "/filtered", "/outbox/"]
ADMIN_PAGES = ["/mailboxes/", "/mailboxes/new", "/templates/", "/tokens", "/users/", "/audit/"]


@pytest.fixture
def grace(app, admin):
    return agent(app, admin)


def _send(client, method: str, path: str):
    if method == "GET":
        return client.get(path)
    token = csrf_from(client.get("/cases/").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, "name": "x", "role": "admin"})


@pytest.mark.parametrize("method,path,task", ADMIN_ROUTES)
def test_an_agent_gets_403_saying_who_can_do_it(grace, method, path, task):
    resp = _send(grace, method, path)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 403
    assert f"Only an admin can {task}. Ask an admin of your team: {ADMIN_EMAIL}" in page


@pytest.mark.parametrize("path", AGENT_PAGES)
def test_an_agent_works_cases_contacts_tasks_outbox_and_held_mail(grace, path):
    assert grace.get(path).status_code == 200


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_an_admin_opens_every_admin_page(admin, path):
    assert admin.get(path).status_code == 200


def test_an_agents_post_to_an_admin_page_changes_nothing(grace, admin):
    _send(grace, "POST", "/tokens")
    page = admin.get("/tokens").get_data(as_text=True)
    assert "No token yet." in page


def test_the_home_page_sends_an_agent_to_the_cases_and_an_admin_to_the_mailboxes(grace, admin):
    assert grace.get("/").headers["Location"] == "/cases/"
    assert admin.get("/").headers["Location"] == "/mailboxes/"


def _nav(page: str) -> list[str]:
    nav = re.search(r"<nav class=\"menu\"[^>]*>(.*?)</nav>", page, re.S).group(1)
    return re.findall(r">([^<]+)</a>", nav)


def test_the_menu_shows_an_agent_only_what_they_may_use(grace):
    assert _nav(grace.get("/cases/").get_data(as_text=True)) == [
        "Cases", "Tasks", "Held", "Contacts", "Outbox", "Account",
    ]  # fmt: skip


def test_the_menu_shows_an_admin_everything(admin):
    assert _nav(admin.get("/cases/").get_data(as_text=True)) == [
        "Cases", "Mailboxes", "Email templates", "Tasks", "Held", "Contacts", "Outbox",
        "API tokens", "Users", "Audit log", "Account",
    ]  # fmt: skip


def test_an_agent_made_admin_gets_the_admin_pages_on_the_next_request(app, admin, grace, app_env):

    assert grace.get("/mailboxes/").status_code == 403
    post_user_form(admin, user_row(app_env, AGENT_EMAIL).id, "role", "admin")
    assert grace.get("/mailboxes/").status_code == 200


def test_the_api_answers_a_token_an_admin_issued_without_a_session(admin, app):
    token = api_token(admin)
    resp = app.test_client().get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
