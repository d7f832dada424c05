"""Contacts: list with search and pages, a contact's page (rename), merging duplicates."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from webapp.contacts.forms import ContactNameForm, MergeForm
from webapp.models import Contact
from webapp.services import contacts as contact_service

bp = Blueprint("contacts", __name__, url_prefix="/contacts")


@bp.after_request
def _no_store(resp):
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _get(contact_id: int) -> Contact:
    contact = g.db.get(Contact, contact_id)
    if contact is None:
        abort(404)
    return contact


@bp.route("/")
def index():
    query = request.args.get("q", "").strip()
    page_arg = request.args.get("page", "")
    page = contact_service.list_contacts(g.db, query, int(page_arg) if page_arg.isdigit() else 1)
    return render_template("contacts/index.html", page=page, q=query)


def _show(contact: Contact, name_form=None, merge_form=None, status: int = 200):
    name_form = name_form or ContactNameForm(obj=contact, formdata=None)
    return render_template(
        "contacts/show.html",
        contact=contact,
        name_form=name_form,
        merge_form=merge_form or MergeForm(formdata=None),
        aliases=contact_service.aliases(g.db, contact.id),
        cases=contact_service.cases_of(g.db, contact.id),
        duplicates=contact_service.duplicates(g.db, contact),
    ), status


@bp.route("/<int:contact_id>", methods=["GET", "POST"])
def show(contact_id: int):
    contact = _get(contact_id)
    if request.method == "GET":
        return _show(contact)
    form = ContactNameForm()
    if not form.validate_on_submit():
        return _show(contact, name_form=form, status=422)
    try:
        contact_service.rename(g.db, contact.id, form.name.data or "")
    except contact_service.ContactError as exc:
        form.name.errors.append(str(exc))
        return _show(contact, name_form=form, status=422)
    flash("The name is saved.", "ok")
    return redirect(url_for(".show", contact_id=contact.id))


@bp.route("/<int:contact_id>/merge", methods=["GET", "POST"])
def merge(contact_id: int):
    """GET ?other=…: what the merge moves, and a button; POST with confirm=yes: merge."""
    contact = _get(contact_id)
    source = request.form if request.method == "POST" else request.args
    form = MergeForm(formdata=None, other=source.get("other", ""))
    other = contact_service.find(g.db, form.other.data or "") if form.other.data else None
    if other is None or other.id == contact.id:
        form.other.errors = [
            "That is this contact itself."
            if other is not None
            else "No contact has this address. Enter the duplicate's email address."
        ]
        return _show(contact, merge_form=form, status=422)
    if request.method == "POST" and request.form.get("confirm") == "yes":
        try:
            contact_service.merge(g.db, contact.id, other.id)
        except contact_service.ContactError as exc:
            flash(str(exc), "error")
            return redirect(url_for(".show", contact_id=contact.id))
        flash(f"{other.email} was merged into this contact.", "ok")
        return redirect(url_for(".show", contact_id=contact.id))
    return render_template(
        "contacts/merge.html",
        contact=contact,
        other=other,
        summary=contact_service.merge_summary(g.db, other),
    )
