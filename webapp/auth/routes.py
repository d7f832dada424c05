"""First-run admin creation, sign-in and sign-out; every other page needs a signed-in user."""

from __future__ import annotations

from flask import Blueprint, Flask, flash, g, redirect, render_template, request, url_for

from webapp.auth import signed_in, trail
from webapp.auth.forms import FirstAdminForm, LoginForm
from webapp.auth.roles import home_for
from webapp.db import utcnow
from webapp.services.access import signin, users
from webapp.urls import local_path

bp = Blueprint("auth", __name__, url_prefix="/auth")

OPEN_ENDPOINTS = {"auth.login", "auth.first_admin", "main.healthz", "static"}
OPEN_ENDPOINTS |= {"intake.confirm_page", "intake.confirm_post"}  # senders confirm without a login


def install_login_guard(app: Flask) -> None:
    @app.before_request
    def _require_login():
        g.user = None
        endpoint = request.endpoint or ""
        if endpoint.startswith("api.") or endpoint == "static":
            return None  # the API checks its bearer tokens itself
        g.user = signed_in.load_user()
        if g.user is not None or endpoint in OPEN_ENDPOINTS:
            return None
        if not users.has_users(g.db):
            return redirect(url_for("auth.first_admin"))
        return redirect(
            url_for("auth.login", next=request.full_path if request.method == "GET" else None)
        )


@bp.route("/first-admin", methods=["GET", "POST"])
def first_admin():
    if users.has_users(g.db):
        return redirect(url_for("auth.login"))
    form = FirstAdminForm()
    if form.validate_on_submit():
        try:
            user = users.create_first_admin(
                g.db,
                form.email.data,
                form.password.data,
                name=form.name.data or "",
                address=trail.client_address(),
            )
        except users.UserError as exc:
            form.email.errors.append(str(exc))
        else:
            if user is None:  # another first-admin form was sent at the same moment and won
                flash("The first admin was created a moment ago: log in.", "error")
                return redirect(url_for("auth.login"))
            signed_in.sign_in(user)
            flash("Welcome. Your admin account is ready; connect your first mailbox.", "ok")
            return redirect(url_for("mailboxes.index"))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/first_admin.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not users.has_users(g.db):
        return redirect(url_for("auth.first_admin"))
    form = LoginForm()
    next_path = local_path(request.args.get("next"))
    error, status, headers = None, 200, {}
    if form.validate_on_submit():
        result = signin.authenticate(
            g.db, form.email.data, form.password.data, signed_in.client_address()
        )
        trail.sign_in_attempt(form.email.data, result.user)  # the audit log
        if result.user is not None:
            signed_in.sign_in(result.user)
            return redirect(next_path or home_for(result.user))
        error, status = result.error, 422
        if result.retry_at is not None:
            wait = max(1, int((result.retry_at - utcnow()).total_seconds()) + 1)
            status, headers = 429, {"Retry-After": str(wait)}
    elif request.method == "POST":
        status = 422
    page = render_template("auth/login.html", form=form, error=error, next_path=next_path)
    return page, status, headers


@bp.route("/logout", methods=["POST"])
def logout():
    signed_in.sign_out()
    flash("You are logged out.", "ok")
    return redirect(url_for("auth.login"))
