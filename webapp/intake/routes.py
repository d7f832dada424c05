"""Held and filtered messages (admin), and the public confirmation page for senders."""

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
from sqlmodel import select

from webapp.extensions import htmx
from webapp.models import Mailbox
from webapp.models import intake as held_states
from webapp.models.intake import HeldMessage
from webapp.services.ingest import held as held_service
from webapp.services.ingest import release as release_service
from webapp.services.outgoing import confirm
from webapp.urls import local_path

bp = Blueprint("intake", __name__)

TABS = {
    "held": ("Held", (held_states.HELD,)),
    "expired": ("Expired", (held_states.EXPIRED,)),
    "discarded": ("Discarded", (held_states.DISCARDED,)),
    "released": ("Released", (held_states.RELEASED,)),
}


@bp.after_request
def _no_store(resp):
    """These pages hold customers' mail, and the confirmation pages carry a token."""
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() else None


def _get(held_id: int) -> HeldMessage:
    held = g.db.get(HeldMessage, held_id)
    if held is None:
        abort(404)
    return held


def _mailboxes() -> dict[int, str]:
    return dict(g.db.exec(select(Mailbox.id, Mailbox.name).order_by(Mailbox.name)).all())


@bp.route("/held")
def held_list():
    tab = request.args.get("state", "held")
    if tab not in TABS:
        tab = "held"
    mailbox_id = _int_arg("mailbox")
    page = held_service.list_held(g.db, TABS[tab][1], mailbox_id, _int_arg("page") or 1)
    return render_template(
        "intake/held.html",
        page=page,
        tab=tab,
        tabs=TABS,
        counts=held_service.counts(g.db, mailbox_id),
        mailbox_id=mailbox_id,
        mailboxes=_mailboxes(),
        labels=held_states.REASON_LABELS,
    )


@bp.route("/filtered")
def filtered_list():
    mailbox_id = _int_arg("mailbox")
    page = held_service.list_held(g.db, (held_states.FILTERED,), mailbox_id, _int_arg("page") or 1)
    return render_template(
        "intake/filtered.html",
        page=page,
        mailbox_id=mailbox_id,
        mailboxes=_mailboxes(),
        labels=held_states.REASON_LABELS,
    )


@bp.route("/held/<int:held_id>")
def show(held_id: int):
    held = _get(held_id)
    return render_template(
        "intake/show.html",
        held=held,
        mailbox=g.db.get(Mailbox, held.mailbox_id),
        case=held_service.case_of(g.db, held.raw_message_id),
        text=held_service.preview(g.db, held),
        labels=held_states.REASON_LABELS,
        releasable=held.state in held_service.RELEASABLE
        and held.reason in held_states.HOLD_REASONS,
    )


@bp.route("/held/raw/<int:raw_id>")
def for_raw(raw_id: int):
    """From the fetch log: the held or filtered row of a raw message."""
    held = g.db.exec(select(HeldMessage).where(HeldMessage.raw_message_id == raw_id)).first()
    if held is None:
        abort(404)
    return redirect(url_for(".show", held_id=held.id))


def _row_response(held: HeldMessage, note: str, ok: bool):
    """HTMX: the list row again, with what happened; without JS: back to the page."""
    if htmx:
        return render_block(
            "intake/held.html", "held_row", h=held, mailboxes=_mailboxes(),
            labels=held_states.REASON_LABELS, note=note, ok=ok,
        )  # fmt: skip
    flash(note, "ok" if ok else "error")
    return redirect(local_path(request.form.get("next")) or url_for(".show", held_id=held.id))


@bp.route("/held/<int:held_id>/release", methods=["POST"])
def release(held_id: int):
    held = _get(held_id)
    if held.reason not in held_states.HOLD_REASONS:
        abort(404)
    try:
        case = release_service.release(g.db, held.id, by=g.user.email)
    except held_service.ReleaseRefused as exc:
        g.db.rollback()
        return _row_response(_get(held_id), str(exc), ok=False)
    return _row_response(_get(held_id), f"Released: the message is case [#{case.number}].", ok=True)


@bp.route("/held/<int:held_id>/discard", methods=["POST"])
def discard(held_id: int):
    held = _get(held_id)
    if held.reason not in held_states.HOLD_REASONS:
        abort(404)
    done = held_service.discard(g.db, held.id, by=g.user.email)
    held = _get(held_id)
    g.db.refresh(held)
    if not done:
        return _row_response(held, f"Not discarded: the message is {held.state}.", ok=False)
    return _row_response(held, "Discarded. It stays in the list of discarded messages.", ok=True)


# -- the public confirmation page (no login: OPEN_ENDPOINTS) -------------------------


def _confirmation(token: str) -> tuple[HeldMessage | None, str]:
    """The held message and the page's state: confirm | released | gone | expired | invalid."""
    secret = current_app.config["SETTINGS"].secret_key
    try:
        held = held_service.from_token(g.db, token, secret)
    except confirm.ConfirmationExpired:
        return None, "expired"
    except confirm.ConfirmationInvalid:
        return None, "invalid"
    if held.state == held_states.HELD:
        return held, "confirm"
    if held.state == held_states.RELEASED:
        return held, "released"
    return held, "gone"


STATUS = {"confirm": 200, "released": 200, "confirmed": 200, "gone": 410, "expired": 410,
          "invalid": 404}  # fmt: skip


@bp.route("/confirm/<token>", methods=["GET"])
def confirm_page(token: str):
    """Shows what is waiting and a Confirm button; changes nothing (link scanners GET too)."""
    held, state = _confirmation(token)
    mailbox = g.db.get(Mailbox, held.mailbox_id) if held else None
    return render_template(
        "intake/confirm.html", held=held, state=state, mailbox=mailbox, token=token
    ), STATUS[state]


@bp.route("/confirm/<token>", methods=["POST"])
def confirm_post(token: str):
    held, state = _confirmation(token)
    mailbox = g.db.get(Mailbox, held.mailbox_id) if held else None
    case = None
    if state == "confirm":
        try:
            case = release_service.confirm_sender(
                g.db, held.id, by="the sender (confirmation link)"
            )
            state = "confirmed"
        except held_service.ReleaseRefused:
            g.db.rollback()
            held = g.db.get(HeldMessage, held.id)
            state = "released" if held and held.state == held_states.RELEASED else "gone"
    return render_template(
        "intake/confirm.html", held=held, state=state, mailbox=mailbox, token=token, case=case
    ), STATUS[state]
