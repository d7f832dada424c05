"""An agent's comment on a case page goes to the contact by email: template, marker, thread, token."""

from __future__ import annotations

import re

from tests.helpers.mailboxes import desk, fetch, open_case, replying_desk
from tests.helpers.messages import MARKER, email, first_text_line, parsed, text_body
from tests.helpers.rows import messages_of, outbox_rows
from tests.helpers.web import ADMIN_EMAIL, case_page, comment
from webapp.db import new_session
from webapp.models import Case, Contact


def test_the_case_page_has_a_comment_form_that_works_without_javascript(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    page = case_page(admin, case.id)
    form = re.search(r'<form id="comment-form"[^>]*>', page).group(0)
    assert f'method="post" action="/cases/{case.id}/comments"' in form
    assert f'hx-post="/cases/{case.id}/comments"' in form
    assert re.search(
        r'<label for="comment">Reply</label>\s*<textarea id="comment" name="comment"', page
    )
    assert 'id="case-outbox"' in page
    assert "No email has been sent from this case." in page


def test_a_comment_is_one_email_to_the_contact_in_the_thread_with_the_template(
    admin, app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user, message_id="<first@ada.example>")
    # the contact writes again on the case; the comment answers this latest message
    mail_user.deliver(
        email(
            "Re: Printer jammed",
            sender="ada@example.org",
            to=mail_user.email,
            message_id="<second@ada.example>",
            in_reply_to="<first@ada.example>",
        )
    )
    fetch(app_env, box)

    resp = comment(admin, case.id, "We ordered a new drum.\nIt arrives on Friday.")
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/cases/{case.id}"
    run_worker()

    (sent,) = smtp_server.wait_for(1)
    assert sent.rcpt_tos == ["ada@example.org"]
    assert sent.mail_from == mail_user.email
    msg = parsed(sent.data)
    assert msg["To"] == "Ada Lovelace <ada@example.org>"
    assert msg["From"] == f"Support <{mail_user.email}>"
    assert msg["Subject"] == f"Re: [#{case.number}] Printer jammed"
    assert first_text_line(msg) == MARKER
    body = text_body(msg)
    # the Default case response template: greeting, comment, agent, mailbox
    assert "Hello Ada Lovelace,\n\nWe ordered a new drum.\nIt arrives on Friday.\n\n" in body
    assert (
        "admin\nSupport" in body
    )  # agent_name: the admin's Name, by default the email's first part
    assert msg["In-Reply-To"] == "<second@ada.example>"
    assert msg["References"].split() == ["<first@ada.example>", "<second@ada.example>"]
    assert msg["Auto-Submitted"] is None
    assert msg["X-Auto-Response-Suppress"] is None
    (row,) = outbox_rows(app_env)
    assert row.state == "sent"
    assert row.message_id == msg["Message-ID"]
    assert row.created_by == ADMIN_EMAIL

    # the comment is in the conversation, marked as ours, with the Message-ID we sent
    out = messages_of(app_env, case.id)[-1]
    assert out.direction == "out"
    assert out.message_id == msg["Message-ID"]
    assert out.text == "We ordered a new drum.\nIt arrives on Friday."
    page = case_page(admin, case.id)
    assert "We ordered a new drum." in page
    assert 'class="badge outbox-sent">Sent<' in page

    # a second comment's References carry the whole thread, ours included
    comment(admin, case.id, "It has arrived.")
    run_worker()
    second = parsed(smtp_server.wait_for(2)[1].data)
    assert second["In-Reply-To"] == "<second@ada.example>"
    # (RFC 5322: the message answered comes last)
    assert second["References"].split() == [
        "<first@ada.example>", msg["Message-ID"], "<second@ada.example>",
    ]  # fmt: skip

    # the contact's answer to our email threads into the case by its In-Reply-To
    mail_user.deliver(email("Re: thanks", sender="ada@example.org", to=mail_user.email,
                            in_reply_to=second["Message-ID"]))  # fmt: skip
    fetch(app_env, box)
    assert messages_of(app_env, case.id)[-1].subject == "Re: thanks"


def test_without_a_template_the_comment_goes_as_written(
    admin, app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = desk(app_env, dovecot, mail_user, smtp_server, case_response_template_id=None)
    case = open_case(app_env, box, mail_user, subject="Re: [#77] Printer")
    comment(admin, case.id, "Done.")
    run_worker()
    msg = parsed(smtp_server.wait_for(1)[0].data)
    assert msg["Subject"] == f"Re: [#{case.number}] Printer"  # a stranger's token is replaced
    assert text_body(msg) == f"{MARKER}\n\nDone.\n"


def test_cr_lf_in_the_subject_and_names_adds_no_header_and_no_recipient(
    admin, app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    with new_session(app_env["DATABASE_URL"]) as db:
        stored = db.get(Case, case.id)
        stored.subject = "Printer\r\nBcc: evil@attacker.example\r\nX-Injected: yes"
        contact = db.get(Contact, stored.contact_id)
        contact.name = "Ada\r\nCc: evil2@attacker.example"
        db.add_all([stored, contact])
        db.commit()
    comment(admin, case.id, "Line one\r\nBcc: evil3@attacker.example")
    run_worker()
    (sent,) = smtp_server.wait_for(1)
    assert sent.rcpt_tos == ["ada@example.org"]
    msg = parsed(sent.data)
    assert msg["Bcc"] is None
    assert msg["Cc"] is None
    assert msg["X-Injected"] is None
    assert msg["Subject"] == (
        f"Re: [#{case.number}] Printer Bcc: evil@attacker.example X-Injected: yes"
    )
    assert msg.get_all("To") == ['"Ada Cc: evil2@attacker.example" <ada@example.org>']
    # the comment text is the body, where a line break is just a line break
    assert "Line one\nBcc: evil3@attacker.example" in text_body(msg)
    header_block = sent.data.split(b"\r\n\r\n", 1)[0].decode()
    assert not re.search(r"^(Bcc|Cc|X-Injected):", header_block, re.M | re.I)


def test_a_double_submit_sends_one_email(
    admin, app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    for _ in range(2):
        assert comment(admin, case.id, "Once only.", key="same-form").status_code == 303
    run_worker()
    assert len(smtp_server.wait_for(1)) == 1
    assert len(outbox_rows(app_env)) == 1
    assert [m.direction for m in messages_of(app_env, case.id)] == ["in", "out"]


def test_htmx_comment_returns_the_form_the_outbox_and_the_new_message(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    resp = comment(admin, case.id, "Via HTMX.", htmx=True)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "<html" not in html
    assert resp.headers["HX-Trigger"] == "case-updated"
    assert html.lstrip().startswith('<form id="comment-form"')
    assert "The reply was added and is being emailed to ada@example.org." in html
    assert re.search(r'<textarea id="comment" name="comment"[^>]*></textarea>', html)  # emptied
    assert '<section class="case-outbox" id="case-outbox"' in html
    assert 'hx-swap-oob="outerHTML"' in html
    assert 'hx-swap-oob="beforeend:section.conversation"' in html
    assert "Via HTMX." in html
    assert "Queued" in html


def test_an_empty_comment_is_refused_and_nothing_is_sent(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    resp = comment(admin, case.id, "   ", htmx=True)
    assert resp.status_code == 422
    assert "Write the reply first." in resp.get_data(as_text=True)
    resp = comment(admin, case.id, "")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "Write the reply first." in page
    assert "<html" in page
    assert outbox_rows(app_env) == []
