"""Cases close and reopen: from the case page, with Send and close, and by a new email."""

from __future__ import annotations

import re

import pytest

from tests.helpers.databases import ON_BOTH
from tests.helpers.mailboxes import desk, fetch, open_case, replying_desk
from tests.helpers.messages import email
from tests.helpers.web import ADMIN_EMAIL, case_page, change_status, comment, csrf_from


@pytest.fixture
def case(admin, app_env, dovecot, mail_user, smtp_server):
    """An open case from Ada's email, on a desk that answers with the default template."""
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    return open_case(app_env, box, mail_user, message_id="<first@ada.example>")


def _status(page: str) -> str:
    return re.search(r'<span class="badge case-(\w+)">', page).group(1)


def _history(page: str) -> list[str]:
    """The case's history as the page shows it, one line per event, without the times."""
    block = re.search(r'<ol class="case-history".*?</ol>', page, re.S)
    items = re.findall(r"<li[^>]*>(.*?)</li>", block.group(0), re.S) if block else []
    text = [re.sub(r"<time[^>]*>.*?</time>", "", item) for item in items]
    return [" ".join(re.sub(r"<[^>]+>", "", line).split()) for line in text]


def test_a_new_case_is_open_and_has_a_close_button(admin, case):
    page = case_page(admin, case.id)
    form = re.search(r'<form class="status-form"[^>]*>', page).group(0)
    assert _status(page) == "open"
    assert f'method="post" action="/cases/{case.id}/close"' in form
    assert f'hx-post="/cases/{case.id}/close"' in form
    assert _history(page) == []


def test_close_without_javascript_goes_back_to_the_case_page(admin, case):
    resp = change_status(admin, case.id, "close")
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/cases/{case.id}"
    page = case_page(admin, case.id)
    assert _status(page) == "closed"
    assert f"Case #{case.number} is closed." in page
    assert f'action="/cases/{case.id}/reopen"' in page
    assert _history(page) == [f"Closed by {ADMIN_EMAIL} on the case page"]


def test_reopen_without_javascript_opens_the_case_again(admin, case):
    change_status(admin, case.id, "close")
    resp = change_status(admin, case.id, "reopen")
    assert resp.status_code == 303
    page = case_page(admin, case.id)
    assert _status(page) == "open"
    assert f"Case #{case.number} is open again." in page
    assert _history(page) == [
        f"Closed by {ADMIN_EMAIL} on the case page",
        f"Reopened by {ADMIN_EMAIL} on the case page",
    ]


def test_close_and_reopen_with_htmx_answer_the_status_block(admin, case):
    resp = change_status(admin, case.id, "close", htmx=True)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith('<section class="case-status" id="case-status"')
    assert _status(html) == "closed"
    assert f"Case #{case.number} is closed." in html
    assert _history(html) == [f"Closed by {ADMIN_EMAIL} on the case page"]

    html = change_status(admin, case.id, "reopen", htmx=True).get_data(as_text=True)
    assert _status(html) == "open"
    assert f'hx-post="/cases/{case.id}/close"' in html


@ON_BOTH
def test_closing_a_closed_case_adds_nothing_to_its_history(admin, case):
    change_status(admin, case.id, "close")
    page = case_page(admin, case.id)
    # a second tab still showing the Close button
    admin.post(f"/cases/{case.id}/close", data={"csrf_token": csrf_from(page)})
    page = case_page(admin, case.id)
    assert f"Case #{case.number} was closed already." in page
    assert len(_history(page)) == 1


def test_close_and_reopen_without_the_csrf_token_are_refused(admin, case):
    assert admin.post(f"/cases/{case.id}/close").status_code == 400
    assert _status(case_page(admin, case.id)) == "open"
    change_status(admin, case.id, "close")
    assert admin.post(f"/cases/{case.id}/reopen", data={"csrf_token": "forged"}).status_code == 400
    assert _status(case_page(admin, case.id)) == "closed"


def test_send_and_close_sends_the_reply_and_closes_the_case(
    admin, app_env, case, smtp_server, run_worker
):
    resp = comment(admin, case.id, "Fixed: the drum was replaced.", close=True)
    assert resp.status_code == 303
    run_worker()
    (sent,) = smtp_server.wait_for(1)
    assert sent.rcpt_tos == ["ada@example.org"]
    assert b"Fixed: the drum was replaced." in sent.data
    page = case_page(admin, case.id)
    assert _status(page) == "closed"
    assert _history(page) == [f"Closed by {ADMIN_EMAIL} with Send and close"]
    assert "Send and close</button>" not in page  # closed already: only Send reply


def test_send_and_close_with_htmx_also_swaps_the_status(admin, case):
    resp = comment(admin, case.id, "Done.", close=True, htmx=True)
    html = resp.get_data(as_text=True)
    status = re.search(r'<section class="case-status".*?</section>', html, re.S).group(0)
    assert resp.status_code == 200
    assert f"Case #{case.number} is closed." in html
    assert 'hx-swap-oob="outerHTML"' in status
    assert _status(status) == "closed"


def test_add_comment_alone_leaves_the_case_open(admin, case):
    comment(admin, case.id, "We are on it.")
    assert _status(case_page(admin, case.id)) == "open"


def _answer_when_closed(admin, app_env, case, mail_user, subject: str, **kwargs) -> str:
    """Close the case, then Ada's answer to her first email arrives; the case page after it."""
    change_status(admin, case.id, "close")
    mail_user.deliver(
        email(subject, to=mail_user.email, in_reply_to="<first@ada.example>", **kwargs)
    )
    fetch(app_env, case.mailbox_id)
    return case_page(admin, case.id)


@ON_BOTH
def test_a_new_email_from_the_customer_reopens_a_closed_case(admin, app_env, case, mail_user):
    page = _answer_when_closed(
        admin, app_env, case, mail_user, "Re: Printer jammed",
        sender="Ada Lovelace <ada@example.org>", body="It jams again.\n",
    )  # fmt: skip
    assert "It jams again." in page
    assert _status(page) == "open"
    assert _history(page)[-1] == "Reopened by ada@example.org with a new email"
    link = re.search(r'<a href="#message-(\d+)">with a new email</a>', page).group(1)
    assert f'id="message-{link}"' in page  # the history links to the email that reopened it


def test_an_automatic_reply_does_not_reopen_a_closed_case(admin, app_env, case, mail_user):
    page = _answer_when_closed(
        admin, app_env, case, mail_user, "Out of office: Printer jammed",
        sender="ada@example.org", extra="Auto-Submitted: auto-replied",
    )  # fmt: skip
    assert "Out of office: Printer jammed" in page  # filed on the case all the same
    assert _status(page) == "closed"


def test_the_status_filter_lists_cases_closed_on_the_case_page(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = desk(app_env, dovecot, mail_user, smtp_server)
    first = open_case(app_env, box, mail_user, subject="Printer jammed")
    second = open_case(app_env, box, mail_user, subject="Scanner broken")
    change_status(admin, first.id, "close")
    closed = admin.get("/cases/?status=closed").get_data(as_text=True)
    still_open = admin.get("/cases/?status=open").get_data(as_text=True)
    assert re.findall(r'<tr id="case-(\d+)">', closed) == [str(first.id)]
    assert re.findall(r'<tr id="case-(\d+)">', still_open) == [str(second.id)]
