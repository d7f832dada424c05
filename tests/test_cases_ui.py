"""The case pages: list, conversation, a message's HTML in a locked-down frame, 100,000 cases."""

from __future__ import annotations

import base64
import re
from contextlib import contextmanager
from datetime import timedelta
from email.utils import format_datetime

from sqlalchemy import event, insert

from tests.conftest import csrf_from
from tests.fetch_support import email, make_mailbox
from webapp.db import get_engine, new_session, utcnow
from webapp.models import Case, Contact, Mailbox, Message
from webapp.services import users

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
HOSTILE_HTML = """<html><body>
<p>Hello <b>support</b>, see the picture:</p>
<script>alert('owned')</script>
<img src="x" onerror="alert('onerror')">
<div hx-get="/mailboxes/1/delete" hx-trigger="load">hx</div>
<div data-hx-post="/auth/logout" data-hx-trigger="load">data-hx</div>
<img src="https://tracker.example/pixel.gif?u=1" width="1" height="1">
<img src="cid:logo@test.example" alt="logo">
<a href="javascript:alert(1)">bad link</a> <a href="https://example.org/help">good link</a>
</body></html>"""


@contextmanager
def count_statements(database_url: str):
    """Counts the SQL statements sent while the block runs (to catch N+1 queries)."""
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def bulk_cases(database_url: str, count: int, mailbox_id: int | None = None) -> None:
    """count cases, one contact each tenth, one message each, attachments on the last ones."""
    start = utcnow() - timedelta(days=30)
    engine = get_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            insert(Contact.__table__),
            [
                {
                    "email": f"c{i}@bulk.example",
                    "email_key": f"c{i}@bulk.example",
                    "name": f"Contact {i}",
                    "created_at": start,
                    "updated_at": start,
                }
                for i in range(count // 10)
            ],
        )
        conn.execute(
            insert(Case.__table__),
            [
                {
                    "number": n,
                    "subject": f"Bulk case {n}",
                    "status": "open" if n % 3 else "closed",
                    "contact_id": (n % (count // 10)) + 1,
                    "requester_email": f"c{n}@bulk.example",
                    "mailbox_id": mailbox_id,
                    "created_at": start + timedelta(seconds=n),
                    "updated_at": start + timedelta(seconds=n),
                }
                for n in range(1, count + 1)
            ],
        )
        conn.execute(
            insert(Message.__table__),
            [
                {
                    "case_id": n,
                    "direction": "in",
                    "opened_case": True,
                    "from_address": f"c{n}@bulk.example",
                    "from_name": "",
                    "to_addresses": "",
                    "cc_addresses": "",
                    "subject": f"Bulk case {n}",
                    "text": f"Body {n}",
                    "full_text": f"Body {n}",
                    "message_id": f"<bulk{n}@x>",
                    "in_reply_to": "",
                    "references_ids": "",
                    "backlog": False,
                    "parse_notes": "",
                    "received_at": start + timedelta(seconds=n),
                    "created_at": start + timedelta(seconds=n),
                }
                for n in range(1, count + 1)
            ],
        )


def html_email(subject: str, sender: str = "Hostile <evil@example.org>") -> bytes:
    """multipart/mixed: (related: alternative text+html, inline PNG) + a PDF attachment."""
    png = base64.b64encode(PNG).decode()
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    parts = [
        f"From: {sender}",
        "To: support@example.com",
        f"Subject: {subject}",
        "Message-ID: <html1@test.example>",
        f"Date: {format_datetime(utcnow())}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="mixed"',
        "",
        "--mixed",
        'Content-Type: multipart/related; boundary="rel"',
        "",
        "--rel",
        'Content-Type: multipart/alternative; boundary="alt"',
        "",
        "--alt",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Hello support, see the picture.",
        "--alt",
        "Content-Type: text/html; charset=utf-8",
        "",
        HOSTILE_HTML,
        "--alt--",
        "--rel",
        "Content-Type: image/png",
        "Content-ID: <logo@test.example>",
        "Content-Disposition: inline; filename=logo.png",
        "Content-Transfer-Encoding: base64",
        "",
        png,
        "--rel--",
        "--mixed",
        'Content-Type: application/pdf; name="invoice.pdf"',
        'Content-Disposition: attachment; filename="invoice.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        pdf,
        "--mixed--",
        "",
    ]
    return "\r\n".join(parts).encode()


def fetch_now(admin, box: int, run_worker) -> None:
    """Press Fetch now on the mailbox page, then let the real RQ worker run the job."""
    token = csrf_from(admin.get(f"/mailboxes/{box}").get_data(as_text=True))
    assert admin.post(f"/mailboxes/{box}/fetch", data={"csrf_token": token}).status_code == 302
    run_worker()


def _case_ids(page: str) -> list[str]:
    return re.findall(r'<tr id="case-(\d+)">', page)


def test_a_thread_is_one_case_with_its_messages_in_order(
    admin, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(
        email(
            "Printer on fire",
            sender="Alice Smith <alice@example.org>",
            message_id="<t1@x>",
            body="The printer is on fire.\n",
        )
    )
    mail_user.deliver(
        email(
            "Re: Printer on fire",
            sender="alice@example.org",
            message_id="<t2@x>",
            in_reply_to="<t1@x>",
            body="Still burning.\n\nOn Monday Alice wrote:\n> The printer is on fire.\n",
        )
    )
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch_now(admin, box, run_worker)

    listing = admin.get("/cases/").get_data(as_text=True)
    assert len(_case_ids(listing)) == 1
    assert "#1" in listing and "Printer on fire" in listing and "Alice Smith" in listing
    assert f"Box {mail_user.email}" in listing and ">open<" in listing
    case_id = _case_ids(listing)[0]
    # filters are plain GET links
    assert _case_ids(admin.get("/cases/?status=closed").get_data(as_text=True)) == []
    assert _case_ids(admin.get(f"/cases/?status=open&mailbox={box}").get_data(as_text=True)) == [
        case_id
    ]
    assert _case_ids(admin.get(f"/cases/?mailbox={box + 1}").get_data(as_text=True)) == []

    page = admin.get(f"/cases/{case_id}").get_data(as_text=True)
    first, reply = page.index("The printer is on fire."), page.index("Still burning.")
    assert first < reply
    assert page.count('class="message') == 2 and "Re: Printer on fire" in page
    assert "Alice Smith" in page and "alice@example.org" in page
    # the reply shows its own text; the quote is behind <details>
    details = page[reply:].split("</article>")[0]
    assert "<details" in details and "&gt; The printer is on fire." in details
    assert admin.get("/cases/99999").status_code == 404


def test_html_is_sanitised_and_shown_in_a_sandboxed_frame(
    admin, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(html_email("Look at this"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch_now(admin, box, run_worker)
    case_id = _case_ids(admin.get("/cases/").get_data(as_text=True))[0]
    page = admin.get(f"/cases/{case_id}").get_data(as_text=True)
    for bad in ("alert(", 'hx-get="/mailboxes', "data-hx-post", "tracker.example"):
        assert bad not in page, bad
    frame = re.search(r"<iframe[^>]*>", page).group(0)
    sandbox = re.search(r'sandbox="([^"]*)"', frame).group(1)
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
    src = re.search(r'src="([^"]+)"', frame).group(1)
    assert src.endswith("/html")

    resp = admin.get(src)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "Hello <b>support</b>" in body
    for bad in (
        "<script",
        "alert(",
        "onerror",
        "hx-get",
        "hx-trigger",
        "data-hx-post",
        "tracker.example",
        "javascript:",
    ):
        assert bad not in body, bad
    assert "[remote image blocked]" in body
    assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="logo"', body)  # cid: inlined
    assert 'href="https://example.org/help"' in body
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "style-src 'unsafe-inline'" in csp
    assert "img-src data:;" in csp and "https:" not in csp and "script-src" not in csp
    assert "frame-ancestors 'self'" in csp and "sandbox" in csp
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"

    # remote images only after clicking "Show remote images" (a link into the frame)
    link = re.search(r'<a href="([^"]+remote_images=1)" target="([^"]+)">Show remote images', page)
    assert link and f'name="{link.group(2)}"' in frame
    shown = admin.get(link.group(1).replace("&amp;", "&"))
    assert 'src="https://tracker.example/pixel.gif?u=1"' in shown.get_data(as_text=True)
    assert "img-src data: https:;" in shown.headers["Content-Security-Policy"]
    assert "<script" not in shown.get_data(as_text=True)

    # attachments: listed with name, size and type; the kept one downloads as a file
    assert "invoice.pdf" in page and "application/pdf" in page and "logo.png" in page
    download = re.search(
        r'<a href="(/cases/\d+/attachments/\d+)" download>invoice.pdf', page
    ).group(1)
    resp = admin.get(download)
    assert resp.status_code == 200 and resp.data == b"%PDF-1.4 fake"
    assert resp.headers["Content-Disposition"].startswith("attachment")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    # a message id of another case is not found through this case
    assert (
        admin.get(src.replace(f"/cases/{case_id}/", f"/cases/{int(case_id) + 1}/")).status_code
        == 404
    )


def test_attachments_not_kept_say_why(admin, app_env, dovecot, mail_user, run_worker):
    mail_user.deliver(html_email("No attachments kept"))
    box = make_mailbox(app_env, dovecot, mail_user, keep_attachments=False)
    fetch_now(admin, box, run_worker)
    case_id = _case_ids(admin.get("/cases/").get_data(as_text=True))[0]
    page = admin.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "invoice.pdf" in page and "not kept: this mailbox does not keep attachments" in page
    assert "/attachments/" not in page  # nothing to download


def test_the_case_page_shows_the_comment_form_the_tasks_and_the_outgoing_mail(
    admin, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(email("Partials"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch_now(admin, box, run_worker)
    case_id = _case_ids(admin.get("/cases/").get_data(as_text=True))[0]
    resp = admin.get(f"/cases/{case_id}")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    for section in ('<form id="comment-form"', '<section id="case-tasks"', 'id="case-outbox"'):
        assert section in page


def test_every_new_page_requires_login(app, client):
    with new_session(app.config["SETTINGS"].database_url) as db:
        users.create_user(db, "someone@example.com", "a long enough password")
    for url in (
        "/cases/",
        "/cases/1",
        "/cases/1/messages/1/html",
        "/cases/1/attachments/1",
        "/mailboxes/1/fetch-status",
    ):
        resp = client.get(url)
        assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"], url
    token = csrf_from(client.get("/auth/login").get_data(as_text=True))
    resp = client.post("/mailboxes/1/messages/1/reprocess", data={"csrf_token": token})
    assert resp.status_code == 302 and "/auth/login" in resp.headers["Location"]


def test_the_list_of_100000_cases_is_paginated_with_a_few_queries(admin, app_env):
    with new_session(app_env["DATABASE_URL"]) as db:
        box = Mailbox(name="Bulk", email_address="bulk@example.com", email_key="bulk@example.com")
        db.add(box)
        db.commit()
        box_id = box.id
    bulk_cases(app_env["DATABASE_URL"], 100_000, box_id)

    with count_statements(app_env["DATABASE_URL"]) as first_page:
        page = admin.get("/cases/").get_data(as_text=True)
    assert len(_case_ids(page)) == 50
    assert page.index("#100000") < page.index("#99999")  # newest activity first
    assert "100,000 cases" in page and "page 1 of 2,000" in page
    assert 'href="/cases/?page=2000" rel="last"' in page
    assert len(first_page) <= 6, first_page

    with count_statements(app_env["DATABASE_URL"]) as last_page:
        page = admin.get("/cases/?page=2000").get_data(as_text=True)
    numbers = re.findall(r'">#(\d+)</a></td>', page)
    assert numbers[0] == "50" and numbers[-1] == "1" and len(numbers) == 50
    assert 'rel="prev"' in page and 'rel="next"' not in page
    assert len(last_page) == len(first_page)

    with count_statements(app_env["DATABASE_URL"]) as filtered:
        page = admin.get(f"/cases/?status=closed&mailbox={box_id}&page=2").get_data(as_text=True)
    assert len(_case_ids(page)) == 50 and "33,333 cases" in page
    assert 'href="/cases/?page=3&amp;status=closed&amp;mailbox=' in page  # links keep the filters
    assert len(filtered) == len(first_page)
    assert "There is no page 5000" in admin.get("/cases/?page=5000").get_data(as_text=True)
