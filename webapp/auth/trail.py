"""What the web layer writes to the audit log about the person at the keyboard."""

from __future__ import annotations

from flask import g, request

from webapp.models import User
from webapp.services.access import audit


def client_address() -> str:
    """The client's IP address as the WSGI server saw it."""
    return request.remote_addr or ""


def actor() -> int | None:
    user = g.get("user")
    return user.id if user is not None else None


def sign_in_attempt(email_tried: str | None, user: User | None) -> None:
    """A sign-in, or a failed one with the email that was tried (never the password); commits."""
    if user is not None:
        audit.record(g.db, audit.SIGN_IN, user.id, audit.user_target(user), None, client_address())
    else:
        email = (email_tried or "").strip()[:320]
        audit.record(g.db, audit.SIGN_IN_FAILED, None, email, {"email": email}, client_address())
    g.db.commit()
