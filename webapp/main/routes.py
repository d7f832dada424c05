"""Home, health probe and API tokens."""

from __future__ import annotations

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
from webapp.services import users

bp = Blueprint("main", __name__)


@bp.route("/")
def home():
    return redirect(home_for(g.user))


@bp.route("/healthz")
def healthz():
    """Platform probe: the database and Redis answer."""
    settings = current_app.config["SETTINGS"]
    checks = {}
    try:
        g.db.exec(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure is the answer itself
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.redis_url:
        try:
            get_redis(settings.redis_url).ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    else:
        checks["redis"] = "error: REDIS_URL is not set"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "error", **checks), 200 if healthy else 503


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
