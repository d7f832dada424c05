"""Home, health probe and API tokens."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import text
from sqlmodel import select

from webapp.auth.roles import home_for
from webapp.auth.trail import actor, client_address
from webapp.models import ApiToken
from webapp.queue import get_redis
from webapp.services.access import users

bp = Blueprint("main", __name__)
log = logging.getLogger(__name__)


@bp.app_errorhandler(404)
def not_found(_exc):
    """The app's layout, and a way back."""
    return render_template("errors/404.html"), 404


@bp.app_errorhandler(500)
def server_error(_exc):
    """The app's layout without the menu: no query, the database may be what failed."""
    return render_template("errors/500.html", bare=True), 500


@bp.route("/")
def home():
    return redirect(home_for(g.user))


@bp.route("/healthz")
def healthz():
    """Platform probe: "ok" or "not ok" for the database and Redis; why is in the server's log,
    never in the answer (an error's class names the software and its state)."""
    settings = current_app.config["SETTINGS"]
    checks = {"database": _check("database", lambda: g.db.exec(text("SELECT 1")))}
    if settings.redis_url:
        checks["redis"] = _check("redis", lambda: get_redis(settings.redis_url).ping())
    else:
        log.warning("health check: REDIS_URL is not set")
        checks["redis"] = "not ok"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "not ok", **checks), 200 if healthy else 503


def _check(name: str, probe) -> str:
    try:
        probe()
    except Exception:  # any failure is the answer itself; the log keeps the reason
        log.warning("health check: %s does not answer", name, exc_info=True)
        return "not ok"
    return "ok"


@bp.route("/tokens", methods=["GET", "POST"])
def tokens():
    new_token = None
    if request.method == "POST":
        name = (request.form.get("name") or "").strip()
        if not name:
            flash("Give the token a name, such as the tool that will use it.", "error")
        else:
            _row, new_token = users.create_token(g.db, name, actor(), client_address())
    rows = g.db.exec(select(ApiToken).order_by(ApiToken.created_at.desc())).all()
    return render_template("main/tokens.html", tokens=rows, new_token=new_token)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke_token(token_id: int):
    users.revoke_token(g.db, token_id, actor(), client_address())
    flash("The token is revoked.", "ok")
    return redirect(url_for(".tokens"))
