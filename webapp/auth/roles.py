"""Who may use what: the one place that says which parts of the site only an admin may use.

An agent works cases, comments, contacts, tasks, the outbox and the held and filtered mail;
everything named in ADMIN_ONLY answers 403 with a page that says who can do it. The API
(/api/v1) checks its bearer tokens itself; only admins issue tokens.
"""

from __future__ import annotations

from flask import Flask, g, render_template, request, url_for

from webapp.models import User
from webapp.services.access import users

# A blueprint, or one endpoint of a blueprint that is otherwise open -> what only an admin may do.
ADMIN_ONLY = {
    "mailboxes": "manage mailboxes",
    "oauth": "manage mailboxes",  # Get Authorization Code and the provider's callback
    "email_templates": "manage email templates",
    "main.tokens": "manage API tokens",
    "main.revoke_token": "manage API tokens",
    "users": "manage users",
    "audit": "read the audit log",
}


def admin_task(endpoint: str | None) -> str | None:
    """What only an admin may do at this endpoint, or None when every signed-in user may."""
    endpoint = endpoint or ""
    return ADMIN_ONLY.get(endpoint) or ADMIN_ONLY.get(endpoint.partition(".")[0])


def may_use(user: User | None, endpoint: str) -> bool:
    """For the nav: whether `user` may open `endpoint`."""
    return user is not None and (user.is_admin or admin_task(endpoint) is None)


def home_for(user: User) -> str:
    """Where a user lands after signing in: admins on the mailboxes, agents on the cases."""
    return url_for("mailboxes.index" if user.is_admin else "cases.index")


def install_role_guard(app: Flask) -> None:
    """After the login guard: an agent asking for an admin's page gets 403 and who to ask."""

    @app.before_request
    def _require_admin():
        user = g.get("user")
        task = admin_task(request.endpoint)
        if user is None or task is None or user.is_admin:
            return None
        page = render_template("main/forbidden.html", task=task, admins=users.admin_emails(g.db))
        return page, 403

    # A global, not a context processor: macros imported without context use it too.
    app.jinja_env.globals["may_use"] = lambda endpoint: may_use(g.get("user"), endpoint)
