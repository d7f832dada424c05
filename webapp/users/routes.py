"""Users: the team's accounts, for admins. Add a user, change a role, deactivate, reactivate."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from webapp.auth.roles import home_for
from webapp.auth.trail import actor, client_address
from webapp.models import User
from webapp.models.user import ROLES
from webapp.services.access import users
from webapp.users.forms import NewUserForm

bp = Blueprint("users", __name__, url_prefix="/users")


def _page(form: NewUserForm, row_errors: dict | None = None, status: int = 200):
    return render_template(
        "users/index.html",
        users=users.list_users(g.db),
        form=form,
        roles=ROLES,
        row_errors=row_errors or {},
        row_values=request.form if row_errors else {},
    ), status


def _get(user_id: int) -> User:
    user = g.db.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _back():
    """To the list, or for an admin who made themselves an agent, to where an agent lands."""
    return redirect(url_for(".index") if g.user.is_admin else home_for(g.user), 303)


@bp.route("/", methods=["GET", "POST"])
def index():
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            user = users.create_user(
                g.db, form.email.data, form.password.data, name=form.name.data or "",
                role=form.role.data, actor=actor(), address=client_address(),
            )  # fmt: skip
        except users.UserError as exc:
            getattr(form, exc.field).errors.append(str(exc))
        else:
            flash(f"{user.name} ({user.email}) can sign in now as {ROLES[user.role]}.", "ok")
            return redirect(url_for(".index"), 303)
    return _page(form, status=422 if request.method == "POST" else 200)


@bp.route("/<int:user_id>/role", methods=["POST"])
def change_role(user_id: int):
    user = _get(user_id)
    role = request.form.get("role", "")
    try:
        changed = users.set_role(g.db, user, role, actor(), client_address())
    except users.UserError as exc:
        return _page(NewUserForm(formdata=None), {user_id: {exc.field: str(exc)}}, 422)
    if changed:
        flash(f"{user.email} is now {ROLES[user.role]}.", "ok")
    return _back()


@bp.route("/<int:user_id>/active", methods=["POST"])
def change_active(user_id: int):
    user = _get(user_id)
    active = request.form.get("active") == "1"
    try:
        changed = users.set_active(g.db, user, active, actor(), client_address())
    except users.UserError as exc:
        return _page(NewUserForm(formdata=None), {user_id: {exc.field: str(exc)}}, 422)
    if changed:
        what = "can sign in again" if active else "is deactivated and signed out everywhere"
        flash(f"{user.email} {what}.", "ok")
    return _back()
