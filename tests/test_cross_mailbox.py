"""The same email sent to two of our mailboxes (support@ and sales@ both in To) makes one case,
shown once with the mailboxes it came through; fetched from the real Dovecot."""

from __future__ import annotations

import re
import threading

import pytest
from sqlmodel import select

from tests.helpers.databases import ON_BOTH
from tests.helpers.mailboxes import desk, fetch, update_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import all_cases, held_of, messages_of, raws
from tests.helpers.web import ADMIN_EMAIL, case_page, change_status, comment, csrf_from
from webapp.db import new_session
from webapp.models import MessageMailbox
from webapp.services.access import users


@pytest.fixture
def sales_user(dovecot):
    return dovecot.new_user("sales")


@pytest.fixture
def boxes(app_env, dovecot, mail_user, sales_user, smtp_server) -> tuple[int, int]:
    """Two desks of ours on the test Dovecot: Support (mail_user) and Sales (sales_user)."""
    support = desk(app_env, dovecot, mail_user, smtp_server, name="Support")
    sales = desk(app_env, dovecot, sales_user, smtp_server, name="Sales")
    return support, sales


@pytest.fixture
def filed_twice(app_env, boxes, mail_user, sales_user) -> tuple[int, int]:
    """The same email to both desks, fetched by Support then by Sales; the two desks."""
    support, sales = boxes
    to_both([mail_user, sales_user], "Invoice 42 is wrong")
    fetch_ok(app_env, support)
    fetch_ok(app_env, sales)
    return boxes


def to_both(users_, subject: str, message_id: str | None = "<both@ada.example>", **kwargs) -> bytes:
    """One email to all these addresses, delivered into each mailbox as a mail server would
    (each copy with its own Delivered-To, so the bytes differ); the email."""
    kwargs.setdefault("sender", "Ada Lovelace <ada@example.org>")
    raw = email(subject, to=", ".join(u.email for u in users_), message_id="<x@x>", **kwargs)
    if message_id is None:
        raw = raw.replace(b"Message-ID: <x@x>\r\n", b"")
    else:
        raw = raw.replace(b"<x@x>", message_id.encode())
    for user in users_:
        user.deliver(f"Delivered-To: {user.email}\r\n".encode() + raw)
    return raw


def fetch_ok(env, box: int) -> None:
    result = fetch(env, box)
    assert result["state"] == "ok", result


def received_by(page: str) -> str | None:
    match = re.search(r'<dd class="received-by">(.*?) <small', page)
    return match.group(1) if match else None


def test_the_same_email_to_two_mailfiled_twice_makes_one_case(
    app_env, filed_twice, mail_user, sales_user
):
    support, sales = filed_twice
    found = all_cases(app_env)
    assert len(found) == 1
    assert found[0].mailbox_id == support  # replies go out through the mailbox read first
    assert len(messages_of(app_env, found[0].id)) == 1


def test_the_second_mailbox_says_duplicate_in_its_fetch_log(
    admin, app_env, filed_twice, mail_user, sales_user
):
    support, sales = filed_twice
    [copy] = raws(app_env, sales)
    [first] = messages_of(app_env, all_cases(app_env)[0].id)
    assert copy.state == "ignored"
    assert copy.error.startswith(f"duplicate of message #{first.id} (received by {mail_user.email}")
    log = re.search(
        r'<table class="list fetch-log wide">.*?</table>',
        admin.get(f"/mailboxes/{sales}").get_data(as_text=True),
        re.S,
    ).group(0)
    assert f"duplicate of message #{first.id}" in log


def test_the_case_page_shows_both_mailfiled_twice(
    admin, app_env, filed_twice, mail_user, sales_user
):
    support, sales = filed_twice
    page = case_page(admin, all_cases(app_env)[0].id)
    assert received_by(page) == f"{mail_user.email}, {sales_user.email}"


def test_a_case_of_one_mailbox_alone_shows_no_received_by(admin, app_env, boxes, mail_user):
    support, _ = boxes
    mail_user.deliver(email("Only to support", to=mail_user.email, message_id="<one@x>"))
    fetch_ok(app_env, support)
    assert received_by(case_page(admin, all_cases(app_env)[0].id)) is None


def test_the_case_list_shows_the_case_once_under_each_mailbox(
    admin, app_env, filed_twice, mail_user, sales_user
):
    support, sales = filed_twice
    case_id = all_cases(app_env)[0].id
    every = admin.get("/cases/").get_data(as_text=True)
    of_sales = admin.get(f"/cases/?mailbox={sales}").get_data(as_text=True)
    of_support = admin.get(f"/cases/?mailbox={support}").get_data(as_text=True)
    assert every.count(f'<tr id="case-{case_id}">') == 1
    assert of_sales.count(f'<tr id="case-{case_id}">') == 1
    assert of_support.count(f'<tr id="case-{case_id}">') == 1
    assert f'title="also received by {sales_user.email}">Sales</a>' in every


def test_a_mailbox_filter_leaves_out_the_cases_that_never_came_through_it(
    admin, app_env, boxes, mail_user
):
    support, sales = boxes
    mail_user.deliver(email("Only to support", to=mail_user.email, message_id="<one@x>"))
    fetch_ok(app_env, support)
    of_sales = admin.get(f"/cases/?mailbox={sales}").get_data(as_text=True)
    assert '<tr id="case-' not in of_sales


def test_a_reply_through_the_second_mailbox_lands_on_the_same_case(
    app_env, filed_twice, mail_user, sales_user
):
    support, sales = filed_twice
    sales_user.deliver(
        email(
            "Re: Invoice 42 is wrong",
            sender="ada@example.org",
            to=sales_user.email,
            message_id="<reply@ada.example>",
            in_reply_to="<both@ada.example>",
        )
    )
    fetch_ok(app_env, sales)
    [case] = all_cases(app_env)
    thread = messages_of(app_env, case.id)
    assert [m.message_id for m in thread] == ["<both@ada.example>", "<reply@ada.example>"]


def test_a_reply_to_both_mailfiled_twice_is_one_comment_too(
    app_env, filed_twice, mail_user, sales_user
):
    support, sales = filed_twice
    to_both(
        [mail_user, sales_user],
        "Re: Invoice 42 is wrong",
        message_id="<reply@ada.example>",
        in_reply_to="<both@ada.example>",
    )
    fetch_ok(app_env, sales)  # this time Sales reads it first
    fetch_ok(app_env, support)
    [case] = all_cases(app_env)
    assert len(messages_of(app_env, case.id)) == 2


def test_an_email_without_message_id_is_not_matched_across_mailboxes(
    app_env, boxes, mail_user, sales_user
):
    support, sales = boxes
    to_both([mail_user, sales_user], "No id at all", message_id=None)
    fetch_ok(app_env, support)
    fetch_ok(app_env, sales)
    assert len(all_cases(app_env)) == 2


def test_the_same_message_id_from_another_sender_is_another_email(
    app_env, boxes, mail_user, sales_user
):
    support, sales = boxes
    mail_user.deliver(email("First", to=mail_user.email, message_id="<reused@x>"))
    sales_user.deliver(
        email("Second", sender="bob@example.net", to=sales_user.email, message_id="<reused@x>")
    )
    fetch_ok(app_env, support)
    fetch_ok(app_env, sales)
    assert [c.subject for c in all_cases(app_env)] == ["First", "Second"]


def test_a_second_copy_in_the_same_mailbox_is_filed_once(app_env, boxes, mail_user):
    support, _ = boxes
    raw = to_both([mail_user], "Sent twice")
    fetch_ok(app_env, support)
    mail_user.deliver(b"X-Copy: 2\r\n" + raw)  # the same email again, other bytes
    fetch_ok(app_env, support)
    assert len(all_cases(app_env)) == 1
    assert "(received by this mailbox before)" in raws(app_env, support)[-1].error


@ON_BOTH
def test_two_workers_fetching_both_mailboxes_at_once_make_one_case(
    app_env, boxes, mail_user, sales_user, monkeypatch
):
    support, sales = boxes
    to_both([mail_user, sales_user], "Invoice 42 is wrong")
    # Each worker holds its filing transaction open a while: their filings overlap.
    monkeypatch.setenv("MAILCHANNEL_TEST_PROCESS_DELAY", "1")
    results: dict[int, dict] = {}
    threads = [
        threading.Thread(target=lambda b=box: results.__setitem__(b, fetch(app_env, b)))
        for box in (support, sales)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [results[b]["state"] for b in (support, sales)] == ["ok", "ok"]
    assert len(all_cases(app_env)) == 1
    states = sorted(raw.state for box in boxes for raw in raws(app_env, box))
    assert states == ["done", "ignored"]
    with new_session(app_env["DATABASE_URL"]) as db:
        assert len(db.exec(select(MessageMailbox)).all()) == 1


def test_the_api_case_lists_its_mailfiled_twice_and_its_history(
    admin, app, app_env, filed_twice, client, mail_user, sales_user
):
    support, sales = filed_twice
    case_id = all_cases(app_env)[0].id
    assert change_status(admin, case_id, "close").status_code in (302, 303)
    with new_session(app_env["DATABASE_URL"]) as db:
        _, token = users.create_token(db, "tests")
    body = client.get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"}).get_json()
    [item] = body["items"]
    assert item["mailboxes"] == [mail_user.email, sales_user.email]
    assert [(e["action"], e["via"]) for e in item["history"]] == [("closed", "case page")]
    assert item["history"][0]["by"] == ADMIN_EMAIL


def test_a_copy_held_in_one_mailbox_is_released_into_the_case_of_the_other(
    admin, app_env, boxes, mail_user, sales_user
):
    support, sales = boxes
    update_mailbox(app_env, support, create_new_contact=False)  # Support holds strangers
    to_both([mail_user, sales_user], "Invoice 42 is wrong")
    fetch_ok(app_env, support)
    fetch_ok(app_env, sales)  # Sales files it: a case of Sales
    [case] = all_cases(app_env)
    held = held_of(app_env, raws(app_env, support)[0].id)
    detail = admin.get(f"/held/{held.id}").get_data(as_text=True)
    resp = admin.post(f"/held/{held.id}/release", data={"csrf_token": csrf_from(detail)},
                      headers={"HX-Request": "true"})  # fmt: skip
    assert f"the message is case [#{case.number}]" in resp.get_data(as_text=True)
    assert len(all_cases(app_env)) == 1
    assert received_by(case_page(admin, case.id)) == f"{sales_user.email}, {mail_user.email}"


def test_our_own_reply_coming_back_through_the_other_mailbox_is_not_a_copy(
    admin, app_env, filed_twice, mail_user, run_worker, sales_user, smtp_server
):
    support, sales = filed_twice
    [case] = all_cases(app_env)
    assert comment(admin, case.id, "We are on it.").status_code == 303
    run_worker()
    (sent,) = smtp_server.wait_for(1)
    assert sent.mail_from == mail_user.email  # the case's own mailbox, read first
    sales_user.deliver(sent.data)  # an agent's Cc to sales@, say
    fetch_ok(app_env, sales)
    assert [m.direction for m in messages_of(app_env, case.id)] == ["in", "out"]
    assert "mail loop" in raws(app_env, sales)[-1].error
    with new_session(app_env["DATABASE_URL"]) as db:
        assert len(db.exec(select(MessageMailbox)).all()) == 1


def test_two_copies_fetched_in_one_batch_are_filed_once(app_env, boxes, mail_user):
    support, _ = boxes
    raw = to_both([mail_user], "Sent twice at once")
    mail_user.deliver(b"X-Copy: 2\r\n" + raw)
    fetch_ok(app_env, support)
    assert len(all_cases(app_env)) == 1
    assert [r.state for r in raws(app_env, support)] == ["done", "ignored"]
