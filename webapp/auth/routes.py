"""First-run admin creation, login and logout; every other page needs a login."""

from __future__ import annotations

from flask import Blueprint, Flask, flash, g, redirect, render_template, request, session, url_for

from webapp.auth import trail
from webapp.auth.forms import FirstAdminForm, LoginForm
from webapp.auth.roles import home_for
from webapp.models import User
from webapp.services import users
from webapp.urls import local_path

bp = Blueprint("auth", __name__, url_prefix="/auth")

OPEN_ENDPOINTS = {"auth.login", "auth.first_admin", "main.healthz", "static"}
OPEN_ENDPOINTS |= {"intake.confirm_page", "intake.confirm_post"}  # senders confirm without a login


def _start_session(user: User) -> None:
    session.clear()  # a new session at login: nothing from before the login survives
    session["uid"] = user.id
    session.permanent = False


def install_login_guard(app: Flask) -> None:
    @app.before_request
    def _require_login():
        endpoint = request.endpoint or ""
        if endpoint.startswith("api."):
            return None  # the API checks its bearer tokens itself
        uid = session.get("uid")
        g.user = users.active_user(g.db, uid)  # a deactivated user is signed out at once
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
            user = users.create_user(
                g.db, form.email.data, form.password.data, address=trail.client_address()
            )
        except users.UserError as exc:
            form.email.errors.append(str(exc))
        else:
            _start_session(user)
            flash("Welcome. Your admin account is ready; connect your first mailbox.", "ok")
            return redirect(url_for("mailboxes.index"))
    status = 422 if request.method == "POST" else 200
    return render_template("auth/first_admin.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not users.has_users(g.db):
        return redirect(url_for("auth.first_admin"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        result = users.authenticate(g.db, form.email.data, form.password.data)
        trail.sign_in_attempt(form.email.data, result.user)  # the audit log
        if result.user is not None:
            _start_session(result.user)
            return redirect(local_path(request.args.get("next")) or home_for(result.user))
        error = result.error
    status = 422 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    flash("You are logged out.", "ok")
    return redirect(url_for("auth.login"))
