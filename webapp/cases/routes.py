"""Cases: the list (search, filters, sorting), a case's conversation, its status (Open, Pending,
Closed; Close and Reopen) and assignee, a message's HTML in a locked-down frame, attachments.

Status, Close, Reopen and Assignee post normally (then back to the case page); with HTMX the
answer is the case page's block "status" alone.
"""

from __future__ import annotations

import functools
import io
import re

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from jinja2_fragments.flask import render_block
from sqlmodel import col, select

from webapp.auth.trail import client_address
from webapp.comments import sending
from webapp.comments.forms import new_comment_key
from webapp.extensions import htmx
from webapp.mail.sanitize import sanitize_html
from webapp.models import Attachment, Case, Contact, Mailbox, Message, User
from webapp.models.case import STATUSES
from webapp.services import case_lists, case_queries, case_status
from webapp.services import tasks as task_service
from webapp.services.outgoing import notify, outbox
from webapp.tasks.forms import TaskForm

bp = Blueprint("cases", __name__, url_prefix="/cases")

# The message frame loads nothing but inline (data:) images and its own inline style, and runs
# no script. allow-same-origin (never with allow-scripts) lets the case page read its height.
FRAME_CSP = (
    "default-src 'none'; img-src data:{remote}; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
    "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox"
)
FRAME_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8">'
    '<meta name="referrer" content="no-referrer">'
    "<style>body{{margin:0;padding:.6rem .8rem;font:15px/1.5 system-ui,sans-serif;"
    "color:#1d2330;overflow-wrap:anywhere}}img{{max-width:100%;height:auto}}"
    "table{{max-width:100%}}</style></head><body>{body}</body></html>"
)
_SIMPLE_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@bp.after_request
def _no_store(resp):
    """Case pages hold customers' mail: never kept by a browser or proxy cache."""
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and len(value) < 10 else None


def _get_case(case_id: int) -> Case:
    case = g.db.get(Case, case_id)
    if case is None:
        abort(404)
    return case


def _get_message(case_id: int, message_id: int) -> Message:
    message = g.db.get(Message, message_id)
    if message is None or message.case_id != case_id:
        abort(404)
    return message


LIST_PAGE = "cases/index.html"
LIST_ARGS = ("page", "q", "status", "mailbox", "assignee", "sort", "dir")  # in the links' order


def _list_args() -> dict:
    """The list's filters and order as asked, each checked (anything else is left out)."""
    status = request.args.get("status")
    assignee = request.args.get("assignee", "")
    sort = request.args.get("sort")
    known = assignee in (case_queries.MINE, case_queries.UNASSIGNED)
    return {
        "q": case_lists.clean(request.args.get("q")) or None,
        "status": status if status in STATUSES else None,
        "mailbox": _int_arg("mailbox"),
        "assignee": assignee if known or _int_arg("assignee") else None,
        "sort": sort if sort in case_queries.SORTS else None,
        "dir": "desc" if sort in case_queries.SORTS and request.args.get("dir") == "desc" else None,
    }


def list_url(args: dict, **changes) -> str:
    """The case list with these filters and order, changed by `changes` (None drops one)."""
    merged = {**args, **changes}
    return url_for("cases.index", **{k: merged.get(k) for k in LIST_ARGS if merged.get(k)})


@bp.route("/")
def index():
    args = _list_args()
    page = min(max(1, _int_arg("page") or 1), 10**9)
    filters = case_queries.CaseFilters(
        args["status"], args["mailbox"], args["assignee"], user_id=g.user.id
    )
    result = case_queries.list_cases(
        g.db, page, filters, sort=args["sort"], descending=args["dir"] == "desc", q=args["q"] or ""
    )
    mailboxes = g.db.exec(select(Mailbox.id, Mailbox.name).order_by(Mailbox.name)).all()
    # Each row links its status and mailbox: the same few links 50 times, built once each.
    links = functools.cache(lambda **changes: list_url(args, **changes))
    ctx = dict(result=result, args=args, mailboxes=mailboxes, statuses=STATUSES, list_url=links)
    return render_template(LIST_PAGE, **ctx)


@bp.route("/<int:case_id>")
def show(case_id: int):
    case = _get_case(case_id)
    shown = case_queries.conversation(g.db, case.id, everything=request.args.get("all") == "1")
    messages = shown.messages
    contact = g.db.get(Contact, case.contact_id) if case.contact_id else None
    mailbox = g.db.get(Mailbox, case.mailbox_id) if case.mailbox_id else None
    outgoing = outbox.for_case(g.db, case.id)
    return render_template(
        "cases/show.html",
        **case_status.top_of_case(g.db, case, shown.hidden_ids),
        messages=messages,
        contact=contact,
        mailbox=mailbox,
        received_by=case_queries.mailboxes_by_case(g.db, [case.id])[case.id],
        attachments=case_queries.attachments_by_message(g.db, [m.id for m in messages]),
        remote_images={m.id for m in messages if case_queries.has_remote_images(m.html)},
        outgoing=outgoing,
        sends=sending.sends_by_message(outgoing),
        comment_key=new_comment_key(),
        note_key=new_comment_key(),
        comment_cc=notify.reply_cc(g.db, case),
        tasks=task_service.tasks_of_case(g.db, case.id),
        task_form=TaskForm(formdata=None),
        **sending.reply_context(mailbox),
    )


@bp.route("/<int:case_id>/status", methods=["POST"])
def set_status(case_id: int):
    """The status form at the top of a case: Open, Pending (waiting for the customer), Closed."""
    case = _get_case(case_id)
    status = request.form.get("status", "")
    if status not in STATUSES:
        return _status_changed(case, "Choose Open, Pending or Closed.", "error")
    who = (g.user.id, client_address())
    label = status.capitalize()
    if case_status.set_status(g.db, case, status, by=g.user.email, who=who):
        g.db.commit()
        return _status_changed(case, f"Case #{case.number} is {label}.")
    return _status_changed(case, f"Case #{case.number} was {label} already.")


@bp.route("/<int:case_id>/assignee", methods=["POST"])
def assign(case_id: int):
    """The assignee form at the top of a case: a user of the team, or nobody."""
    case = _get_case(case_id)
    value = request.form.get("assignee", "")
    user = g.db.get(User, int(value)) if value.isdigit() and len(value) < 10 else None
    if value and (user is None or not user.active):
        return _status_changed(case, "Choose an active member of the team, or Nobody.", "error")
    if case_status.assign(g.db, case, user, by=g.user.email, who=(g.user.id, client_address())):
        g.db.commit()
        whom = user.display_name if user else "nobody"
        return _status_changed(case, f"Case #{case.number} is assigned to {whom}.")
    return _status_changed(case, f"Case #{case.number} was assigned so already.")


@bp.route("/<int:case_id>/close", methods=["POST"])
def close(case_id: int):
    return _change_status(case_id, case_status.close_case, "is closed", "was closed already")


@bp.route("/<int:case_id>/reopen", methods=["POST"])
def reopen(case_id: int):
    return _change_status(case_id, case_status.reopen_case, "is open again", "is not closed")


def _change_status(case_id: int, change, done: str, unchanged: str):
    """Close or Reopen as the agent; the case page says which happened."""
    case = _get_case(case_id)
    if change(g.db, case, by=g.user.email, who=(g.user.id, client_address())):
        g.db.commit()
        return _status_changed(case, f"Case #{case.number} {done}.")
    return _status_changed(case, f"Case #{case.number} {unchanged}.")


def _status_changed(case: Case, notice: str, category: str = "ok"):
    """The block "status" for HTMX, else back to the case page with the notice."""
    if htmx:
        return render_block(
            "cases/show.html",
            "status",
            **case_status.top_of_case(g.db, case),
            status_notice=(category, notice),
        ), (422 if category == "error" else 200)
    flash(notice, category)
    return redirect(url_for("cases.show", case_id=case.id), 303)


@bp.route("/<int:case_id>/messages/<int:message_id>/html")
def message_html(case_id: int, message_id: int):
    """The sanitised HTML part alone, for <iframe sandbox>: its own strict CSP, framable by us only."""
    message = _get_message(case_id, message_id)
    if not message.html:
        abort(404)
    remote = request.args.get("remote_images") == "1"
    images = case_queries.inline_images(g.db, message.id)
    body = sanitize_html(message.html, allow_remote_images=remote, cid_resolver=images.get)
    resp = make_response(FRAME_PAGE.format(body=body))
    resp.headers["Content-Type"] = "text/html; charset=utf-8"
    resp.headers["Content-Security-Policy"] = FRAME_CSP.format(remote=" https:" if remote else "")
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.route("/<int:case_id>/attachments/<int:attachment_id>")
def attachment(case_id: int, attachment_id: int):
    """Download a kept attachment: always as a file, never rendered by the browser."""
    row = g.db.exec(
        select(Attachment)
        .join(Message, col(Message.id) == col(Attachment.message_id))
        .where(col(Attachment.id) == attachment_id, col(Message.case_id) == case_id)
    ).first()
    if row is None or row.data is None:
        abort(404)
    ctype = row.content_type if _SIMPLE_TYPE.match(row.content_type or "") else None
    resp = send_file(
        io.BytesIO(row.data),
        mimetype=ctype or "application/octet-stream",
        as_attachment=True,
        download_name=_CONTROL.sub("_", row.filename) or f"attachment-{row.id}",
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    resp.headers["Cache-Control"] = "private, no-store"
    return resp
