"""The two ways to write on a case page: Reply, emailed to the case's contact (and the Cc,
by default the customer's) via the outbox, and Internal note, never emailed.

The case page shows the forms in its blocks "comment_form" (cases/_comment_form.html) and
"note_form" (cases/_note_form.html). They post normally (then back to the case page); with
HTMX the answer is the case page's blocks: a fresh form, for a reply the Outgoing mail
section (out of band), and the new message appended to the conversation (out of band), plus
an HX-Trigger "case-updated" event. "Send and close" also closes the case once the reply is
queued, and then its status block comes along too.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    get_template_attribute,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from jinja2_fragments.flask import render_block
from redis.exceptions import RedisError

from webapp.auth.trail import client_address
from webapp.comments.forms import CommentForm, NoteForm, new_comment_key
from webapp.comments.sending import reply_context
from webapp.extensions import htmx
from webapp.models import Case, Mailbox, Message, OutboxMessage
from webapp.models import outbox as states
from webapp.services import case_status
from webapp.services.outgoing import notify, outbox
from webapp.urls import local_path

bp = Blueprint("comments", __name__)

CASE_PAGE = "cases/show.html"
RETRY_PAGE = "comments/retry.html"


def ring(row: OutboxMessage) -> str:
    """Ask a worker to send the row now; what to tell the agent."""
    if row.state != states.QUEUED:
        return f"The reply was added; its email is {row.state}."
    settings = current_app.config["SETTINGS"]
    if settings.redis_url:
        try:
            outbox.request_send(g.db, row.id, settings.redis_url, settings.queue_name)
        except RedisError:
            return (
                "The reply was added. The queue cannot be reached right now: the email to "
                f"{row.to_addr} goes out as soon as it can."
            )
    return f"The reply was added and is being emailed to {row.to_addr}."


@bp.route("/cases/<int:case_id>/comments", methods=["POST"])
def add(case_id: int):
    case = g.db.get(Case, case_id)
    if case is None:
        abort(404)
    form = CommentForm()
    back = local_path(form.next.data) or url_for("cases.show", case_id=case.id)
    error = cc_error = None
    # A form without the Cc field keeps the customer's Cc; an empty one copies nobody.
    typed_cc = form.cc.data if form.cc.raw_data else None
    try:
        cc = notify.parse_cc(typed_cc) if typed_cc is not None else None
    except notify.CommentError as exc:
        cc_error = str(exc)
    if form.validate_on_submit() and cc_error is None:
        try:
            row = notify.post_comment(
                g.db, case, author=g.user.email, agent_name=g.user.display_name,
                text=form.comment.data, cc=cc,
                idempotency_key=(form.key.data or new_comment_key())[:100],
            )  # fmt: skip
        except notify.CommentError as exc:
            error = str(exc)
        else:
            notice = ring(row)
            closed = form.close.data and _close(case)
            if closed:
                notice += f" Case #{case.number} is closed."
            if htmx:
                return _fragments(case, row, notice, back, closed)
            flash(notice, "ok")
            return redirect(back, 303)
    elif cc_error is None or form.comment.errors:
        error = next(iter(form.comment.errors), None) or "The reply was not sent: try again."
    ctx = {
        "case": case,
        "comment_error": error,
        "cc_error": cc_error,
        "comment_text": form.comment.data or "",
        "comment_cc": form.cc.data if typed_cc is not None else notify.reply_cc(g.db, case),
        "comment_key": form.key.data or new_comment_key(),
        "comment_next": back,
        "writing": "reply",
        **_reply_context(case),
    }
    if htmx:
        return render_block(RETRY_PAGE, "comment_form", **ctx), 422
    return render_template(RETRY_PAGE, **ctx), 422


@bp.route("/cases/<int:case_id>/notes", methods=["POST"])
def add_note(case_id: int):
    """An internal note: added to the conversation for the team, never emailed."""
    case = g.db.get(Case, case_id)
    if case is None:
        abort(404)
    form = NoteForm()
    back = local_path(form.next.data) or url_for("cases.show", case_id=case.id)
    error = next(iter(form.note.errors), None) if not form.validate_on_submit() else None
    if form.errors and error is None:
        error = "The note was not added: reload the page and try again."
    if error is None:
        try:
            note = notify.post_note(
                g.db, case, author=g.user.email, text=form.note.data,
                agent_name=g.user.display_name, key=form.key.data or "",
            )  # fmt: skip
        except notify.CommentError as exc:
            error = str(exc)
        else:
            notice = "The internal note was added. It is not emailed to anyone."
            if htmx:
                html = render_block(CASE_PAGE, "note_form", case=case, note_notice=notice,
                                    note_next=back, note_key=new_comment_key())  # fmt: skip
                html += render_block(CASE_PAGE, "message", case=case, message=note,
                                     attachments={}, remote_images=set(), sends={}, oob=True)  # fmt: skip
                resp = make_response(html)
                resp.headers["HX-Trigger"] = "case-updated"
                return resp
            flash(notice, "ok")
            return redirect(back, 303)
    ctx = {"case": case, "note_error": error, "note_text": form.note.data or "",
           "note_next": back, "note_key": form.key.data or new_comment_key(),
           "writing": "note"}  # fmt: skip
    if htmx:
        return render_block(RETRY_PAGE, "note_form", **ctx), 422
    return render_template(RETRY_PAGE, **ctx), 422


def _close(case: Case) -> bool:
    """Send and close: the comment is queued (committed), now the case closes."""
    who = (g.user.id, client_address())
    if not case_status.close_case(g.db, case, g.user.email, case_status.SEND_AND_CLOSE, who):
        return False
    g.db.commit()
    return True


def _fragments(case: Case, row: OutboxMessage, notice: str, back: str, closed: bool = False):
    """A fresh form, the Outgoing mail section and the new comment (and the case's status
    when it was closed), for HTMX."""
    message = g.db.get(Message, row.case_message_id) if row.case_message_id else None
    html = render_block(
        CASE_PAGE, "comment_form", case=case, comment_key=new_comment_key(),
        comment_notice=notice, comment_next=back, comment_cc=notify.reply_cc(g.db, case),
        **_reply_context(case),
    )  # fmt: skip
    html += render_block(
        CASE_PAGE, "outbox", case=case, outgoing=outbox.for_case(g.db, case.id), oob=True
    )
    if message is not None:
        html += render_block(
            CASE_PAGE, "message", case=case, message=message, attachments={},
            remote_images=set(), oob=True, sends={message.id: row},
        )  # fmt: skip
    if closed:
        html += render_block(CASE_PAGE, "status", **case_status.top_of_case(g.db, case), oob=True)
    resp = make_response(html)
    resp.headers["HX-Trigger"] = "case-updated"
    return resp


def _reply_context(case: Case) -> dict:
    return reply_context(g.db.get(Mailbox, case.mailbox_id) if case.mailbox_id else None)


@bp.route("/outbox/<int:outbox_id>/send-state")
def send_state(outbox_id: int):
    """HTMX: a comment's email state on its message in the thread (polled while it is sent)."""
    row = g.db.get(OutboxMessage, outbox_id)
    if row is None:
        abort(404)
    next_url = local_path(request.args.get("next")) or ""
    return get_template_attribute("cases/_sending.html", "send_state")(row, next_url)
