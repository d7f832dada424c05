"""Outgoing mail: the outbox log, and Send again / Mark as sent for failed and uncertain mail."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from jinja2_fragments.flask import render_block
from redis.exceptions import RedisError
from sqlmodel import select

from webapp.extensions import htmx
from webapp.models import Case, Mailbox, OutboxMessage
from webapp.models import outbox as states
from webapp.services.outgoing import outbox
from webapp.urls import local_path

bp = Blueprint("outbox", __name__, url_prefix="/outbox")

PER_PAGE = 50
PAGE = "outbox/index.html"


def _get(outbox_id: int) -> OutboxMessage:
    row = g.db.get(OutboxMessage, outbox_id)
    if row is None:
        abort(404)
    return row


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() else None


@bp.route("/")
def index():
    """The outbox log: every mailbox's outgoing mail, or one mailbox's (?mailbox=ID)."""
    mailbox_id = _int_arg("mailbox")
    state = request.args.get("state") if request.args.get("state") in states.STATES else None
    page = max(1, _int_arg("page") or 1)
    rows, total = outbox.listing(g.db, mailbox_id=mailbox_id, state=state, page=page,
                                 per_page=PER_PAGE)  # fmt: skip
    case_ids = {r.case_id for r in rows if r.case_id}
    numbers = (
        dict(g.db.exec(select(Case.id, Case.number).where(Case.id.in_(case_ids))).all())
        if case_ids
        else {}
    )
    mailboxes = g.db.exec(select(Mailbox.id, Mailbox.name).order_by(Mailbox.name)).all()
    return render_template(
        PAGE, rows=rows, total=total, page=page, per_page=PER_PAGE, next_url=request.full_path,
        mailbox_id=mailbox_id, state=state, mailboxes=mailboxes, numbers=numbers,
        states=states.STATES, mailbox_names=dict(mailboxes),
    )  # fmt: skip


def _row_response(row: OutboxMessage):
    """The list page's block "outbox_row" alone (the row is on a case or mailbox page too)."""
    g.db.refresh(row)
    next_url = local_path(request.form.get("next") or request.args.get("next")) or ""
    names = {}
    if request.values.get("with_mailbox") and (mailbox := g.db.get(Mailbox, row.mailbox_id)):
        names = {mailbox.id: mailbox.name}
    return render_block(
        PAGE, "outbox_row", row=row, next_url=next_url, link=None, mailbox_names=names
    )


@bp.route("/<int:outbox_id>/row")
def row(outbox_id: int):
    """HTMX: one row again (a queued or sending row polls itself until it settles)."""
    return _row_response(_get(outbox_id))


@bp.route("/<int:outbox_id>/send-again", methods=["POST"])
def send_again(outbox_id: int):
    row = _get(outbox_id)
    if not outbox.send_again(g.db, row.id):
        return _answer(row, "Only a failed or uncertain message can be sent again.", "error")
    note = f"The message to {row.to_addr} is queued again, with the same Message-ID."
    settings = current_app.config["SETTINGS"]
    if settings.redis_url:
        try:
            outbox.request_send(g.db, row.id, settings.redis_url, settings.queue_name)
        except RedisError:
            note += " The queue cannot be reached right now: it goes out as soon as it can."
    return _answer(row, note, "ok")


@bp.route("/<int:outbox_id>/mark-sent", methods=["POST"])
def mark_sent(outbox_id: int):
    row = _get(outbox_id)
    if outbox.mark_sent(g.db, row.id, g.user.email):
        return _answer(row, f"The message to {row.to_addr} is marked as sent.", "ok")
    return _answer(row, "Only an uncertain message can be marked as sent.", "error")


def _answer(row: OutboxMessage, note: str, category: str):
    """HTMX: the row in its new state; otherwise a flash and back to where the button was."""
    if htmx:
        return _row_response(row)
    flash(note, category)
    back = local_path(request.form.get("next"))
    if back is None and row.case_id:
        back = url_for("cases.show", case_id=row.case_id)
    return redirect(back or url_for(".index"), 303)
