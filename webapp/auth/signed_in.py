"""The browser's side of a server-kept session: the token in the Flask session cookie."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, request, session

from webapp.models import User
from webapp.services.access import sessions

COOKIE_KEY = "sid"


def timeouts() -> sessions.Timeouts:
    settings = current_app.config["SETTINGS"]
    return sessions.Timeouts(
        idle=timedelta(hours=settings.session_idle_hours),
        absolute=timedelta(days=settings.session_max_days),
    )


def client_address() -> str:
    return request.remote_addr or ""


def sign_in(user: User) -> None:
    """A new session at sign-in: nothing from the cookie before it survives."""
    session.clear()
    session[COOKIE_KEY] = sessions.start_session(
        g.db, user.id, timeouts(), request.user_agent.string, client_address()
    )
    session.permanent = False


def sign_out() -> None:
    sessions.end_session(g.db, session.get(COOKIE_KEY))
    session.clear()


def current_session_id() -> str | None:
    """The id of this browser's session row (to keep it when the others end)."""
    return sessions.current_id(session.get(COOKIE_KEY))


def load_user() -> User | None:
    """The signed-in user, or None (and a cleared cookie) when the session is over."""
    token = session.get(COOKIE_KEY)
    if not token:
        return None
    user = sessions.load_user(g.db, token, timeouts())
    if user is None:
        session.clear()
    return user
