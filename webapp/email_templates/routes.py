"""Email templates: list, edit with a live preview."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from jinja2_fragments.flask import render_block
from sqlmodel import select

from webapp.db import utcnow
from webapp.email_templates.forms import EmailTemplateForm
from webapp.extensions import htmx
from webapp.models import EmailTemplate
from webapp.services import templating

bp = Blueprint("email_templates", __name__, url_prefix="/templates")


@bp.route("/")
def index():
    rows = g.db.exec(select(EmailTemplate).order_by(EmailTemplate.name)).all()
    return render_template("email_templates/index.html", templates=rows)


def _preview(form: EmailTemplateForm) -> dict:
    out = {"subject": None, "body": None, "errors": []}
    for key, field in (("subject", form.subject), ("body", form.body)):
        errors = templating.template_errors(field.data or "", field.label.text)
        if errors:
            out["errors"] += errors
        else:
            out[key] = templating.render(field.data or "", templating.SAMPLE)
    return out


def _edit(row: EmailTemplate | None):
    form = EmailTemplateForm(obj=row)
    if form.validate_on_submit():
        duplicate = g.db.exec(
            select(EmailTemplate).where(EmailTemplate.name == form.name.data.strip())
        ).first()
        if duplicate is not None and (row is None or duplicate.id != row.id):
            form.name.errors = ["Another template has this name."]
        else:
            row = row or EmailTemplate(name="")
            row.name, row.kind = form.name.data.strip(), form.kind.data
            row.subject, row.body, row.updated_at = form.subject.data, form.body.data, utcnow()
            g.db.add(row)
            g.db.commit()
            flash(f"Template “{row.name}” saved.", "ok")
            return redirect(url_for(".index"))
    ctx = {"form": form, "row": row, "preview": _preview(form), "variables": templating.VARIABLES}
    status = 422 if request.method == "POST" else 200
    if htmx and request.method == "POST":
        return render_block("email_templates/edit.html", "template_form", **ctx), status
    return render_template("email_templates/edit.html", **ctx), status


@bp.route("/new", methods=["GET", "POST"])
def new():
    return _edit(None)


@bp.route("/<int:template_id>", methods=["GET", "POST"])
def edit(template_id: int):
    row = g.db.get(EmailTemplate, template_id)
    if row is None:
        abort(404)
    return _edit(row)


@bp.route("/preview", methods=["POST"])
def preview():
    """HTMX: the preview block for what is typed now."""
    form = EmailTemplateForm()
    return render_block("email_templates/edit.html", "preview", preview=_preview(form))
