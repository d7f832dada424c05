"""The team as a browser sees it: users added on the Users page, each signed in with their own
client."""

from __future__ import annotations

from sqlmodel import select

from tests.helpers.web import csrf_from, get_csrf
from webapp.db import new_session
from webapp.models import User

AGENT_EMAIL = "grace@example.com"
AGENT_NAME = "Grace Hopper"
AGENT_PASSWORD = "agent password 1234"


def add_user(admin, email: str = AGENT_EMAIL, *, name: str = AGENT_NAME, role: str = "agent",
             password: str = AGENT_PASSWORD):  # fmt: skip
    """Post the Add a user form of the Users page, as the signed-in admin."""
    token = csrf_from(admin.get("/users/").get_data(as_text=True))
    data = {"csrf_token": token, "email": email, "name": name, "role": role, "password": password}
    return admin.post("/users/", data=data)


def sign_in(app, email: str = AGENT_EMAIL, password: str = AGENT_PASSWORD):
    """A new browser, signed in; the answer to the login POST as `.login`."""
    browser = app.test_client()
    token = get_csrf(browser)
    browser.login = browser.post(
        "/auth/login", data={"csrf_token": token, "email": email, "password": password}
    )
    return browser


def agent(app, admin):
    """An agent added by the admin and signed in with its own client."""
    assert add_user(admin).status_code == 303
    browser = sign_in(app)
    assert browser.login.status_code == 302
    return browser


def user_row(env: dict, email: str) -> User:
    """The user as stored."""
    with new_session(env["DATABASE_URL"]) as db:
        return db.exec(select(User).where(User.email == email)).one()


def post_user_form(admin, uid: int, what: str, value: str):
    """Change role (`what` "role": "admin" | "agent") or status ("active": "1" | "0")."""
    token = csrf_from(admin.get("/users/").get_data(as_text=True))
    return admin.post(f"/users/{uid}/{what}", data={"csrf_token": token, what: value})
