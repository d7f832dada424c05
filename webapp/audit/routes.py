"""The audit log, for admins: who did what, when, from where; newest first."""

from __future__ import annotations

from flask import Blueprint, g, render_template, request

from webapp.services.access import audit

bp = Blueprint("audit", __name__, url_prefix="/audit")

MAX_PAGE = 10**9


@bp.route("/")
def index():
    try:
        number = min(max(1, int(request.args.get("page", 1))), MAX_PAGE)
    except ValueError:
        number = 1
    rows, total = audit.page(g.db, number)
    pages = max(1, -(-total // audit.PER_PAGE))
    return render_template(
        "audit/index.html", rows=rows, total=total, page=number, pages=pages, labels=audit.LABELS
    )
