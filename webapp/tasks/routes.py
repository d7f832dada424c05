"""Tasks: add one to a case, mark it done or open again, list them all.

The case page and tasks/case.html show a case's tasks in their block "tasks"
(cases/_tasks.html). Every form posts normally; with HTMX the answer is that block alone.
"""

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

from webapp.extensions import htmx
from webapp.models import Case, Mailbox, Task
from webapp.models import outbox as outbox_states
from webapp.services import tasks as task_service
from webapp.services.outgoing import outbox
from webapp.tasks.forms import TaskForm
from webapp.urls import local_path

bp = Blueprint("tasks", __name__)

PER_PAGE = 50
PAGE = "tasks/case.html"


def _tasks_context(case: Case, form: TaskForm | None = None, notice=None) -> dict:
    """What the block "tasks" shows: the case's (task, history) pairs and the form to add one."""
    return {
        "case": case,
        "tasks": task_service.tasks_of_case(g.db, case.id),
        "task_form": form or TaskForm(formdata=None),
        "task_notice": notice,
    }


def _case_page(case_id: int) -> str:
    return url_for("cases.show", case_id=case_id) + "#case-tasks"


@bp.after_request
def _no_store(resp):
    """Task histories quote people's mail: never kept by a browser or proxy cache."""
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _case(case_id: int) -> Case:
    case = g.db.get(Case, case_id)
    if case is None:
        abort(404)
    return case


def _task(task_id: int) -> Task:
    task = g.db.get(Task, task_id)
    if task is None:
        abort(404)
    return task


def _tasks_view(case: Case, form: TaskForm | None = None, status: int = 200, notice=None):
    """The block "tasks" for HTMX, else the whole page around it."""
    ctx = _tasks_context(case, form, notice)
    if htmx:
        return render_block(PAGE, "tasks", **ctx), status
    return render_template(PAGE, **ctx), status


@bp.route("/cases/<int:case_id>/tasks", methods=["GET"], endpoint="case_tasks")
def case_tasks_page(case_id: int):
    """A case's tasks on a page of their own (where the form lands without JavaScript)."""
    return _tasks_view(_case(case_id))


@bp.route("/cases/<int:case_id>/tasks", methods=["POST"])
def create(case_id: int):
    case = _case(case_id)
    form = TaskForm()
    if not form.validate_on_submit():
        return _tasks_view(case, form, 422)
    task = task_service.create_task(
        g.db,
        case,
        title=form.title.data,
        assignee_email=form.assignee_email.data,
        due_date=form.due_date.data,
        created_by=g.user,
    )
    notice = _ring(task)
    if htmx:
        return _tasks_view(case, notice=notice)
    flash(notice[1], notice[0])
    return redirect(_case_page(case.id))


def _ring(task: Task) -> tuple[str, str]:
    """Ask a worker to send the assignment email now; (flash category, what to tell the agent)."""
    row = task_service.assignment_email(g.db, task)
    if row is None:
        return "error", "The task was added, but no email was sent: the case has no mailbox."
    mailbox = g.db.get(Mailbox, row.mailbox_id)
    settings = current_app.config["SETTINGS"]
    if row.state == outbox_states.QUEUED and settings.redis_url:
        try:
            outbox.request_send(g.db, row.id, settings.redis_url, settings.queue_name)
        except RedisError:
            return "ok", (
                "The task was added. The queue cannot be reached right now: the email to "
                f"{row.to_addr} goes out as soon as it can."
            )
    if mailbox is not None and not (mailbox.smtp_host or "").strip():
        return "error", (
            f"The task was added, but its email to {row.to_addr} cannot go out: outgoing mail "
            f"(SMTP) is not set up for the mailbox {mailbox.name}."
        )
    return "ok", f"The task was added and is being emailed to {row.to_addr}."


@bp.route("/tasks/<int:task_id>/done", methods=["POST"])
def done(task_id: int):
    task = _task(task_id)
    if task_service.complete_task(g.db, task, g.user.email):
        g.db.commit()
    return _after_change(task, f"“{task.title}” is done.")


@bp.route("/tasks/<int:task_id>/reopen", methods=["POST"])
def reopen(task_id: int):
    task = _task(task_id)
    if task_service.reopen_task(g.db, task, g.user.email):
        g.db.commit()
    return _after_change(task, f"“{task.title}” is open again.")


def _after_change(task: Task, message: str):
    if htmx:
        return _tasks_view(_case(task.case_id), notice=("ok", message))
    flash(message, "ok")
    return redirect(local_path(request.form.get("next")) or _case_page(task.case_id))


@bp.route("/tasks")
def index():
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    rows, total = task_service.task_page(g.db, page, PER_PAGE)
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    return render_template("tasks/index.html", rows=rows, page=page, pages=pages, total=total)
