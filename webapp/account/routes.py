"""Your account: change your password, see where you are signed in, sign out everywhere."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, session, url_for

from webapp.account.forms import PasswordChangeForm
from webapp.auth import signed_in
from webapp.services.access import audit, sessions, signin

bp = Blueprint("account", __name__, url_prefix="/account")


def _page(form: PasswordChangeForm, status: int = 200):
    rows = sessions.open_sessions(g.db, g.user.id, signed_in.timeouts())
    page = render_template(
        "account/index.html",
        form=form,
        open_sessions=rows,
        this_session=signed_in.current_session_id(),
    )
    return page, status


@bp.route("/")
def index():
    return _page(PasswordChangeForm())


@bp.route("/password", methods=["POST"])
def change_password():
    """Change your own password: the current one is required; your other sessions end."""
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        return _page(form, 422)
    try:
        signin.change_password(
            g.db,
            g.user,
            form.current_password.data,
            form.new_password.data,
            signed_in.client_address(),
        )
    except signin.PasswordError as exc:
        getattr(form, exc.field).errors.append(str(exc))
        return _page(form, 422)
    ended = sessions.end_sessions(g.db, g.user.id, except_session=signed_in.current_session_id())
    others = f" {ended} other session(s) were signed out." if ended else ""
    flash(f"Your password is changed.{others}", "ok")
    return redirect(url_for(".index"))


@bp.route("/sign-out-everywhere", methods=["POST"])
def sign_out_everywhere():
    """End every session of this user, this one included."""
    audit.record(
        g.db,
        audit.SIGNED_OUT_EVERYWHERE,
        g.user.id,
        audit.user_target(g.user),
        None,
        signed_in.client_address(),
    )
    sessions.end_sessions(g.db, g.user.id)  # commits the event too
    session.clear()
    flash("You are signed out everywhere, here too. Log in again to go on.", "ok")
    return redirect(url_for("auth.login"))


@bp.after_request
def _never_cached(resp):
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp
