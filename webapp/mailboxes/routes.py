"""Mailboxes: list, form (full page or HTMX fragments), Mailbox Setup, enable, delete."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    get_template_attribute,
    redirect,
    render_template,
    request,
    url_for,
)
from jinja2_fragments.flask import render_block
from markupsafe import Markup
from redis.exceptions import RedisError
from sqlmodel import select

from webapp.auth.trail import actor, client_address
from webapp.extensions import htmx
from webapp.headers import FORM_AUTH_URLS, allow_form_action
from webapp.mailboxes.forms import MailboxForm
from webapp.models import EmailTemplate, Mailbox, RawMessage
from webapp.models import message as message_states
from webapp.oauth.nonces import remember_nonce, session_nonces
from webapp.services import mailboxes as mailbox_service
from webapp.services import oauth, pasted_code
from webapp.services.access import audit
from webapp.services.fetching import schedule, verify
from webapp.services.fetching import status as fetch_status
from webapp.services.ingest import rows as ingest_rows
from webapp.services.outgoing import outbox
from webapp.services.presets import AFTER_FETCH_LABELS, DEFAULT_PORTS, failing_field
from webapp.services.push import state as push_state

bp = Blueprint("mailboxes", __name__, url_prefix="/mailboxes")

FORM_PAGE = "mailboxes/form.html"


def _settings():
    return current_app.config["SETTINGS"]


def _get(mailbox_id: int) -> Mailbox:
    mailbox = g.db.get(Mailbox, mailbox_id)
    if mailbox is None:
        abort(404)
    return mailbox


def _form(mailbox: Mailbox | None = None, **kwargs) -> MailboxForm:
    templates = g.db.exec(select(EmailTemplate).order_by(EmailTemplate.name)).all()
    exclude = mailbox.id if mailbox else None
    form = MailboxForm(
        mailbox=mailbox,
        templates=templates,
        email_taken=lambda email: mailbox_service.email_taken(g.db, email, exclude),
        obj=mailbox,
        focus=request.args.get("focus"),
        **kwargs,
    )
    if mailbox is None and request.method == "GET":
        defaults = mailbox_service.default_template_ids(g.db)
        form.case_response_template_id.data = defaults["case_response"]
        form.auto_ack_template_id.data = defaults["auto_ack"]
        form.end_of_message_marker.data = Mailbox.model_fields["end_of_message_marker"].default
    return form


def _page(form: MailboxForm, mailbox: Mailbox | None, status: int = 200):
    # Get Authorization Code saves, then is redirected to the Auth URL typed in this very form,
    # unknown when the page is sent: any Auth URL the form accepts (https, http on loopback).
    allow_form_action(*FORM_AUTH_URLS)
    ctx = {"form": form, "mailbox": mailbox, "redirect_uri": _settings().redirect_uri}
    if htmx and request.method == "POST":
        return render_block(FORM_PAGE, "mailbox_form", **ctx), status
    return render_template(FORM_PAGE, **ctx), status


@bp.route("/")
def index():
    rows = g.db.exec(select(Mailbox).order_by(Mailbox.name)).all()
    allow_form_action(*(m.auth_url for m in rows if m.auth_type == "oauth"))  # Re-authorize
    return render_template("mailboxes/index.html", mailboxes=rows, stale=_stale(rows))


def _stale(rows: list[Mailbox]) -> set[int]:
    """The mailboxes whose badge says "not fetching" (no success for 3 fetch intervals)."""
    return {m.id for m in rows if fetch_status.is_stale(m)}


@bp.route("/new", methods=["GET", "POST"])
def new():
    return _edit(None)


@bp.route("/<int:mailbox_id>/edit", methods=["GET", "POST"])
def edit(mailbox_id: int):
    return _edit(_get(mailbox_id))


def _edit(mailbox: Mailbox | None):
    form = _form(mailbox)
    if request.method == "POST" and request.form.get("action") == "preset":
        form.choose_provider()  # the no-JavaScript way to apply a preset: re-render filled in
        return _page(form, mailbox)
    if request.method == "POST":
        form.apply_preset(only_blank=True)  # Gmail or Microsoft 365 chosen, Save pressed at once
    if form.validate_on_submit():
        data = form.cleaned()
        before = audit.mailbox_snapshot(mailbox)
        saved = mailbox_service.save_mailbox(g.db, mailbox, data)
        audit.mailbox_saved(g.db, before, saved, actor(), client_address())
        if data["auth_type"] == "oauth" and data.get("auth_code"):
            _exchange_pasted_code(saved, data["auth_code"])
        if request.form.get("action") == "authorize":
            return _authorize(saved)
        _start_verification(saved)
        if htmx:
            return "", 204, {"HX-Redirect": url_for(".setup", mailbox_id=saved.id)}
        return redirect(url_for(".setup", mailbox_id=saved.id))
    return _page(form, mailbox, 422 if request.method == "POST" else 200)


def _authorize(mailbox: Mailbox):
    """Get Authorization Code on the form: saved as Save does, then straight to the provider
    (the callback ends on Mailbox Setup)."""
    if mailbox.auth_type != "oauth":
        flash("Get Authorization Code needs Authentication Type OAuth.", "error")
        return _to(url_for(".edit", mailbox_id=mailbox.id))
    url, nonce = oauth.start_authorization(g.db, mailbox, g.user.id, _settings().redirect_uri)
    remember_nonce(nonce)
    return _to(url, code=303)


def _to(url: str, code: int = 302):
    """A redirect, or for htmx the header that makes the browser itself go there."""
    if htmx:
        return "", 204, {"HX-Redirect": url}
    return redirect(url, code=code)


def _exchange_pasted_code(mailbox: Mailbox, pasted: str) -> None:
    """The fallback for providers that cannot reach us: a pasted code or redirected URL."""
    try:
        pasted_code.exchange_pasted(g.db, mailbox, pasted, session_nonces(), g.user.id)
    except oauth.OAuthFailed as exc:
        flash(exc.message, "error")
    else:
        flash("The pasted authorization code was exchanged for a token.", "ok")


@bp.route("/form/<part>", methods=["POST"])
@bp.route("/<int:mailbox_id>/form/<part>", methods=["POST"])
def form_fragment(part: str, mailbox_id: int | None = None):
    """HTMX: re-render a section after Authentication Type, preset or protocol changed."""
    mailbox = _get(mailbox_id) if mailbox_id else None
    form = _form(mailbox)
    trigger = request.headers.get("HX-Trigger-Name")
    if trigger == "provider":
        form.choose_provider()
    elif trigger == "tenant" and form.provider.data == "outlook":
        form.apply_preset()
    elif trigger == "protocol":
        old = request.form.get("port", "").strip()
        if not old or (old.isdigit() and int(old) in DEFAULT_PORTS.values()):
            form.port.data = DEFAULT_PORTS[form.protocol.data]
            form.port.raw_data = [str(form.port.data)]
        if form.has_preset:
            form.apply_preset()
    if part != "connection":
        abort(404)
    ctx = {"form": form, "mailbox": mailbox, "redirect_uri": _settings().redirect_uri}
    html = render_block(FORM_PAGE, "connection", **ctx) + _warning_oob(form)
    if trigger == "provider":  # Gmail or Microsoft 365 chose OAuth: the select says so at once
        html += render_block(FORM_PAGE, "auth_select", form=form, oob=True)
    return html


def _warning_oob(form: MailboxForm) -> str:
    """The Basic warning beside Authentication Type, swapped out of band with a fragment."""
    return render_block(FORM_PAGE, "auth_warning", form=form, oob=True)


@bp.route("/validate/<field>", methods=["POST"])
@bp.route("/<int:mailbox_id>/validate/<field>", methods=["POST"])
def validate_field(field: str, mailbox_id: int | None = None):
    """HTMX live validation: the field's own fragment, with its message."""
    mailbox = _get(mailbox_id) if mailbox_id else None
    form = _form(mailbox)
    if field not in form._fields or field == "csrf_token":
        abort(404)
    target = form[field]
    target.validate(form)
    target.errors = list(target.errors) + form.field_errors(field)
    field_row = get_template_attribute("_macros.html", "field_row")
    # field_row gives Markup: the warning is HTML too, not text to escape
    return field_row(target, form) + Markup(_warning_oob(form) if field == "host" else "")


def _start_verification(mailbox: Mailbox) -> None:
    settings = _settings()
    verify.request_verification(g.db, mailbox, settings.redis_url, settings.queue_name)


def _fetch_context(mailbox: Mailbox) -> dict:
    """What the mailbox page shows about fetching: status, fetch log, failed messages."""
    before = request.args.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 10 else None
    return {
        "mailbox": mailbox,
        "status": fetch_status.mailbox_status(g.db, mailbox),
        "push": push_state.push_status(g.db, mailbox),
        "log": fetch_status.fetch_log(g.db, mailbox.id, before_id=before_id),
        "failed": fetch_status.failed_messages(g.db, mailbox.id),
        "after_fetch": AFTER_FETCH_LABELS[mailbox.after_fetch],
    }


@bp.route("/<int:mailbox_id>")
def show(mailbox_id: int):
    mailbox = _get(mailbox_id)
    sent = outbox.mailbox_summary(g.db, mailbox.id)
    allow_form_action(mailbox.auth_url if mailbox.auth_type == "oauth" else None)
    return render_template("mailboxes/show.html", sent=sent, **_fetch_context(mailbox))


@bp.route("/<int:mailbox_id>/fetch-status")
def fetch_status_block(mailbox_id: int):
    """HTMX: the mailbox page's fetching block alone (polled every 2s while a fetch runs)."""
    return render_block("mailboxes/show.html", "fetching", **_fetch_context(_get(mailbox_id)))


@bp.route("/<int:mailbox_id>/setup")
def setup(mailbox_id: int):
    return _setup_page(_get(mailbox_id))


def _setup_page(mailbox: Mailbox):
    ctx = {
        "mailbox": mailbox,
        "stuck": verify.is_stuck(mailbox),
        "folders": mailbox_service.folder_choices(mailbox),
        "failing": failing_field(mailbox.last_error_kind, mailbox.auth_type),
    }
    allow_form_action(mailbox.auth_url if mailbox.auth_type == "oauth" else None)
    if htmx:
        return render_block("mailboxes/setup.html", "progress", **ctx)
    return render_template("mailboxes/setup.html", **ctx)


@bp.route("/<int:mailbox_id>/folders", methods=["POST"])
def choose_folders(mailbox_id: int):
    """Mailbox Setup's folder checkboxes: the ticked ones become Folders, then counted again."""
    mailbox = _get(mailbox_id)
    names = [name for name in request.form.getlist("folders") if name.strip()]
    try:
        if not names:
            raise ValueError("Tick at least one folder to read.")
        if mailbox_service.choose_folders(g.db, mailbox, names):
            _start_verification(mailbox)
    except ValueError as exc:
        flash(f"{exc} The folders were left as they were.", "error")
        return _to(url_for(".setup", mailbox_id=mailbox_id))  # the whole page, with the message
    if htmx:
        return _setup_page(mailbox)
    return redirect(url_for(".setup", mailbox_id=mailbox_id))


@bp.route("/<int:mailbox_id>/verify", methods=["POST"])
def reverify(mailbox_id: int):
    _start_verification(_get(mailbox_id))
    return redirect(url_for(".setup", mailbox_id=mailbox_id))


@bp.route("/<int:mailbox_id>/continue", methods=["POST"])
def continue_setup(mailbox_id: int):
    mailbox = _get(mailbox_id)
    if mailbox.verify_state != "ok":
        flash(
            "The mailbox has not been verified yet: run the check again or go back to the form.",
            "error",
        )
        return redirect(url_for(".setup", mailbox_id=mailbox_id))
    settings = _settings()
    if not mailbox.enabled:
        schedule.turn_on_fetching(g.db, mailbox, settings.redis_url, settings.queue_name)
        flash(
            f"{mailbox.name} is set up but disabled: it stays offline and fetches nothing "
            "until you enable it.",
            "ok",
        )
        return redirect(url_for(".show", mailbox_id=mailbox_id))
    try:
        schedule.turn_on_fetching(g.db, mailbox, settings.redis_url, settings.queue_name)
    except RedisError:
        flash(
            f"{mailbox.name} is on; the queue cannot be reached right now, so the first fetch "
            "starts as soon as it can.",
            "error",
        )
    else:
        flash(
            f"{mailbox.name} is on: the first fetch has started. Mail already in the mailbox "
            "becomes cases but gets no acknowledgement.",
            "ok",
        )
    return redirect(url_for(".show", mailbox_id=mailbox_id))


@bp.route("/<int:mailbox_id>/fetch", methods=["POST"])
def fetch_now(mailbox_id: int):
    """Fetch now: one job, unless the database says one is already queued or running."""
    mailbox = _get(mailbox_id)
    settings = _settings()
    try:
        job = schedule.request_fetch(g.db, mailbox.id, settings.redis_url, settings.queue_name)
    except RedisError:
        flash("The queue cannot be reached right now; the fetch runs as soon as it can.", "error")
    else:
        flash(
            "Fetching now." if job else "A fetch of this mailbox is already queued or running.",
            "ok",
        )
    return redirect(url_for(".show", mailbox_id=mailbox_id))


REPROCESSED = {
    message_states.DONE: ("The message was processed: it is on a case now.", "ok"),
    message_states.IGNORED: ("The message was processed and ignored again: {error}", "error"),
    message_states.FAILED: ("The message still cannot be processed: {error}", "error"),
    message_states.TOO_LARGE: ("The message is still over the size limit: {error}", "error"),
    message_states.REFETCH: (
        "The message was never downloaded (it was over the size limit): the next fetch "
        "downloads it. Raise the limit first, or it is skipped again.",
        "ok",
    ),
}


@bp.route("/<int:mailbox_id>/messages/<int:raw_id>/reprocess", methods=["POST"])
def reprocess(mailbox_id: int, raw_id: int):
    """Reprocess a message that did not become a case (or ask the next fetch to download it)."""
    mailbox = _get(mailbox_id)
    raw = g.db.get(RawMessage, raw_id)
    if raw is None or raw.mailbox_id != mailbox.id:
        abort(404)
    state = ingest_rows.reprocess(g.db, raw.id)
    g.db.refresh(raw)
    text, category = REPROCESSED.get(state, (f"The message is now {state}.", "ok"))
    notice = (category, text.format(error=raw.error or "no reason recorded"))
    if htmx:
        ctx = _fetch_context(mailbox)
        return render_block("mailboxes/show.html", "fetching", notice=notice, **ctx)
    flash(notice[1], notice[0])
    return redirect(url_for(".show", mailbox_id=mailbox_id))


@bp.route("/<int:mailbox_id>/toggle", methods=["POST"])
def toggle(mailbox_id: int):
    mailbox = _get(mailbox_id)
    mailbox.enabled = not mailbox.enabled
    g.db.add(mailbox)
    target, fields = audit.mailbox_target(mailbox), {"fields": ["enabled"]}
    audit.record(g.db, audit.MAILBOX_CHANGED, actor(), target, fields, client_address())
    g.db.commit()
    flash(f"{mailbox.name} is {'enabled' if mailbox.enabled else 'disabled'}.", "ok")
    if htmx:
        return render_block(
            "mailboxes/index.html", "mailbox_row", m=mailbox, stale=_stale([mailbox])
        )
    return redirect(
        request.referrer
        if request.referrer and request.referrer.startswith(request.host_url)
        else url_for(".index")
    )


@bp.route("/<int:mailbox_id>/delete", methods=["GET", "POST"])
def delete(mailbox_id: int):
    mailbox = _get(mailbox_id)
    if request.method == "POST":
        target = audit.mailbox_target(mailbox)
        g.db.delete(mailbox)
        audit.record(g.db, audit.MAILBOX_DELETED, actor(), target, None, client_address())
        g.db.commit()
        flash(f"Mailbox {mailbox.name} was deleted.", "ok")
        return redirect(url_for(".index"))
    return render_template("mailboxes/delete.html", mailbox=mailbox)
