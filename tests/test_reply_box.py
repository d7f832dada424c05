"""The reply box of a case page says before anyone writes when the mailbox cannot send, and a
failed send is marked on its message in the thread with Send again."""

from __future__ import annotations

import re

from sqlalchemy import update

from tests.helpers.mailboxes import open_case, replying_desk, update_mailbox
from tests.helpers.rows import outbox_rows
from tests.helpers.team import agent
from tests.helpers.web import ADMIN_EMAIL, case_page, comment, csrf_from
from webapp.db import new_session
from webapp.models import OutboxMessage

NOT_SET_UP = "This mailbox cannot send yet: set up its Outgoing mail."


def _reply_fieldset(page: str) -> str:
    return re.search(
        r'<form id="comment-form".*?<fieldset class="plain"([^>]*)>', page, re.S
    ).group(1)


def _without_smtp(app_env, dovecot, mail_user, smtp_server):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server, smtp_host="")
    return box, open_case(app_env, box, mail_user)


def test_without_outgoing_mail_the_reply_box_is_off_and_says_why(
    admin, app_env, dovecot, mail_user, smtp_server
):
    _box, case = _without_smtp(app_env, dovecot, mail_user, smtp_server)
    page = case_page(admin, case.id)
    assert NOT_SET_UP in page
    assert "disabled" in _reply_fieldset(page)


def test_an_admin_gets_a_link_to_the_outgoing_mail_settings(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box, case = _without_smtp(app_env, dovecot, mail_user, smtp_server)
    page = case_page(admin, case.id)
    assert f'href="/mailboxes/{box}/edit#outgoing-mail"' in page


def test_an_agent_is_told_to_ask_an_admin_and_gets_no_settings_link(
    app, admin, app_env, dovecot, mail_user, smtp_server
):
    box, case = _without_smtp(app_env, dovecot, mail_user, smtp_server)
    page = case_page(agent(app, admin), case.id)
    assert f"ask an admin ({ADMIN_EMAIL})" in page
    assert f"/mailboxes/{box}/edit" not in page


def test_a_comment_posted_anyway_is_refused_with_the_reason_and_nothing_is_queued(
    admin, app_env, dovecot, mail_user, smtp_server
):
    _box, case = _without_smtp(app_env, dovecot, mail_user, smtp_server)
    page = case_page(admin, case.id)
    data = {"csrf_token": csrf_from(page), "comment": "Hello?", "next": f"/cases/{case.id}"}
    resp = admin.post(f"/cases/{case.id}/comments", data=data)
    assert resp.status_code == 422
    assert NOT_SET_UP in resp.get_data(as_text=True)
    assert outbox_rows(app_env) == []


def test_a_mailbox_that_sends_has_the_reply_box_on(admin, app_env, dovecot, mail_user, smtp_server):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    page = case_page(admin, case.id)
    assert "disabled" not in _reply_fieldset(page)


def _fail_last(app_env, kind: str, text: str) -> None:
    with new_session(app_env["DATABASE_URL"]) as db:
        db.exec(update(OutboxMessage).values(state="failed", last_error_kind=kind, last_error=text))
        db.commit()


def test_a_failed_send_is_marked_on_its_message_with_send_again(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "A new drum is on its way.")
    _fail_last(app_env, "smtp_permanent", "The server refused the recipient.")
    page = case_page(admin, case.id)
    message = re.search(r'<article class="message outgoing".*?</article>', page, re.S).group(0)
    assert "Not sent" in message
    assert "The server refused the recipient." in message
    assert "Send again" in message


def test_send_again_from_the_thread_queues_the_email_again(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "A new drum is on its way.")
    _fail_last(app_env, "smtp_permanent", "The server refused the recipient.")
    (row,) = outbox_rows(app_env)
    page = case_page(admin, case.id)
    back = f"/cases/{case.id}#message-{row.case_message_id}"
    data = {"csrf_token": csrf_from(page), "next": back}
    resp = admin.post(f"/outbox/{row.id}/send-again", data=data)
    assert resp.headers["Location"] == back
    assert outbox_rows(app_env)[0].state == "queued"


def test_a_refused_login_on_the_last_send_turns_the_reply_box_off(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "First answer.")
    _fail_last(app_env, "auth", "The SMTP server refused the login.")
    page = case_page(admin, case.id)
    assert "its last email failed.</strong> The SMTP server refused the login." in page
    assert "disabled" in _reply_fieldset(page)


def test_a_refused_recipient_does_not_turn_the_reply_box_off(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "First answer.")
    _fail_last(app_env, "smtp_permanent", "The server refused the recipient.")
    assert "disabled" not in _reply_fieldset(case_page(admin, case.id))


def test_smtp_security_none_elsewhere_turns_the_reply_box_off(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    update_mailbox(app_env, box, smtp_host="smtp.example.com", smtp_security="none")
    case = open_case(app_env, box, mail_user)
    assert "disabled" in _reply_fieldset(case_page(admin, case.id))


def test_a_comment_being_sent_polls_its_state_until_it_settles(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "A new drum is on its way.")
    (row,) = outbox_rows(app_env)
    assert f'hx-get="/outbox/{row.id}/send-state' in case_page(admin, case.id)
    _fail_last(app_env, "auth", "The SMTP server refused the login.")
    fragment = admin.get(f"/outbox/{row.id}/send-state?next=/cases/{case.id}").get_data(
        as_text=True
    )
    assert "Not sent" in fragment
    assert "hx-get" not in fragment  # settled: no more polling
