"""The case pages: list, conversation, a message's HTML in a locked-down frame, 100,000 cases."""

from __future__ import annotations

import re

from tests.helpers.databases import count_statements
from tests.helpers.mailboxes import make_mailbox
from tests.helpers.messages import email, html_email
from tests.helpers.rows import bulk_cases
from tests.helpers.web import csrf_from, fetch_now
from webapp.db import new_session
from webapp.models import Mailbox
from webapp.services.access import users


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
    assert "#1" in listing
    assert "Printer on fire" in listing
    assert "Alice Smith" in listing
    assert f"Box {mail_user.email}" in listing
    assert ">open<" in listing
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
    assert page.count('class="message') == 2
    assert "Re: Printer on fire" in page
    assert "Alice Smith" in page
    assert "alice@example.org" in page
    # the reply shows its own text; the quote is behind <details>
    details = page[reply:].split("</article>")[0]
    assert "<details" in details
    assert "&gt; The printer is on fire." in details
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
    assert "allow-scripts" not in sandbox
    # same origin without scripts: the case page can read the frame's height, the mail runs nothing
    assert "allow-same-origin" in sandbox
    src = re.search(r'src="([^"]+)"', frame).group(1)
    assert src.endswith("/html")

    resp = admin.get(src)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
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
    assert "default-src 'none'" in csp
    assert "style-src 'unsafe-inline'" in csp
    assert "img-src data:;" in csp
    assert "https:" not in csp
    assert "script-src" not in csp
    assert "frame-ancestors 'self'" in csp
    assert "sandbox" in csp
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"

    # remote images only after clicking "Show remote images" (a link into the frame)
    link = re.search(r'<a href="([^"]+remote_images=1)" target="([^"]+)">Show remote images', page)
    assert link
    assert f'name="{link.group(2)}"' in frame
    shown = admin.get(link.group(1).replace("&amp;", "&"))
    assert 'src="https://tracker.example/pixel.gif?u=1"' in shown.get_data(as_text=True)
    assert "img-src data: https:;" in shown.headers["Content-Security-Policy"]
    assert "<script" not in shown.get_data(as_text=True)

    # attachments: listed with name, size and type; the kept one downloads as a file
    assert "invoice.pdf" in page
    assert "PDF document" in page
    assert "logo.png" in page
    download = re.search(
        r'<a href="(/cases/\d+/attachments/\d+)" download>invoice.pdf', page
    ).group(1)
    resp = admin.get(download)
    assert resp.status_code == 200
    assert resp.data == b"%PDF-1.4 fake"
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
    assert "invoice.pdf" in page
    assert "not kept: this mailbox does not keep attachments" in page
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
        assert resp.status_code == 302, url
        assert "/auth/login" in resp.headers["Location"], url
    token = csrf_from(client.get("/auth/login").get_data(as_text=True))
    resp = client.post("/mailboxes/1/messages/1/reprocess", data={"csrf_token": token})
    assert resp.status_code == 302
    assert "/auth/login" in resp.headers["Location"]


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
    assert "100,000 cases" in page
    assert "page 1 of 2,000" in page
    assert 'href="/cases/?page=2000" rel="last"' in page
    assert len(first_page) <= 6, first_page

    with count_statements(app_env["DATABASE_URL"]) as last_page:
        page = admin.get("/cases/?page=2000").get_data(as_text=True)
    numbers = re.findall(r'">#(\d+)</a></td>', page)
    assert numbers[0] == "50"
    assert numbers[-1] == "1"
    assert len(numbers) == 50
    assert 'rel="prev"' in page
    assert 'rel="next"' not in page
    assert len(last_page) == len(first_page)

    with count_statements(app_env["DATABASE_URL"]) as filtered:
        page = admin.get(f"/cases/?status=closed&mailbox={box_id}&page=2").get_data(as_text=True)
    assert len(_case_ids(page)) == 50
    assert "33,333 cases" in page
    assert 'href="/cases/?page=3&amp;status=closed&amp;mailbox=' in page  # links keep the filters
    assert len(filtered) == len(first_page)
    assert "There is no page 5000" in admin.get("/cases/?page=5000").get_data(as_text=True)
