"""The case workspace: status and assignee at the top, Reply (emailed, with the customer's Cc)
and Internal note (never emailed), the HTML frame, readable attachments, the case list's
preview, sorting and filters, and contacts in natural order."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

import pytest

from tests.helpers.mailboxes import fetch, open_case, replying_desk
from tests.helpers.messages import email, parsed
from tests.helpers.rows import messages_of, outbox_rows
from tests.helpers.team import AGENT_NAME, agent
from tests.helpers.web import ADMIN_EMAIL, api_token, case_page, comment, csrf_from
from webapp.db import new_session
from webapp.filters import file_kind
from webapp.models import Contact


@pytest.fixture
def case(admin, app_env, dovecot, mail_user, smtp_server):
    """Ada's case, copied to Bob and to our own address, on a desk that answers by email."""
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    return open_case(
        app_env, box, mail_user, message_id="<first@ada.example>",
        cc=f"Bob Builder <bob@example.org>, {mail_user.email}",
    )  # fmt: skip


def _note_form(client, case_id: int, text: str) -> dict:
    """The Internal note form's fields as the case page renders them, the note typed in."""
    page = case_page(client, case_id)
    form = re.search(r'<form id="note-form".*?</form>', page, re.S).group(0)
    key = re.search(r'name="key" value="([^"]+)"', form).group(1)
    return {"csrf_token": csrf_from(page), "note": text, "next": f"/cases/{case_id}", "key": key}


def _note(client, case_id: int, text: str, *, htmx: bool = False):
    """Post the Internal note form as the case page renders it."""
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(
        f"/cases/{case_id}/notes", data=_note_form(client, case_id, text), headers=headers
    )


def _reply(client, case_id: int, text: str, cc: str):
    """Post the Reply form with its Cc field as typed."""
    page = case_page(client, case_id)
    key = re.search(r'name="key" value="([^"]+)"', page).group(1)
    data = {"csrf_token": csrf_from(page), "comment": text, "cc": cc, "key": key}
    return client.post(f"/cases/{case_id}/comments", data=data)


def _post_top(client, case_id: int, what: str, value: str):
    """The status or assignee form at the top of the case."""
    page = case_page(client, case_id)
    data = {"csrf_token": csrf_from(page), what: value}
    field = "status" if what == "status" else "assignee"
    return client.post(f"/cases/{case_id}/{field}", data=data)


def _history(page: str) -> list[str]:
    block = re.search(r'<ol class="case-history".*?</ol>', page, re.S)
    items = re.findall(r"<li[^>]*>(.*?)</li>", block.group(0), re.S) if block else []
    text = [re.sub(r"<time[^>]*>.*?</time>", "", item) for item in items]
    return [" ".join(re.sub(r"<[^>]+>", "", line).split()) for line in text]


def _cc_field(page: str) -> str:
    return html.unescape(
        re.search(r'<input type="text" id="cc" name="cc" value="([^"]*)"', page)[1]
    )


# -- Reply and Internal note ----------------------------------------------------------------


def test_the_case_page_offers_reply_and_internal_note_as_two_forms(admin, case):
    page = case_page(admin, case.id)
    assert (
        f'<form id="comment-form" class="comment-form composer-panel" method="post" action="/cases/{case.id}/comments"'
        in page
    )
    assert (
        f'<form id="note-form" class="note-form composer-panel" method="post" action="/cases/{case.id}/notes"'
        in page
    )
    assert '<label for="comment">Reply</label>' in page
    assert '<label for="note">Internal note</label>' in page


def test_an_internal_note_is_in_the_thread_and_is_never_emailed(
    admin, app_env, case, smtp_server, run_worker
):
    resp = _note(admin, case.id, "Ada is a VIP: call her back.")
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/cases/{case.id}"
    run_worker()

    assert outbox_rows(app_env) == []
    assert smtp_server.messages == []
    note = messages_of(app_env, case.id)[-1]
    assert note.direction == "note"
    assert note.text == "Ada is a VIP: call her back."
    page = case_page(admin, case.id)
    assert "The internal note was added. It is not emailed to anyone." in page
    article = re.search(
        rf'<article class="message note" id="message-{note.id}">.*?</article>', page, re.S
    )
    assert article
    assert "Internal note" in article.group(0)


def test_an_internal_note_with_htmx_returns_a_fresh_form_and_the_note(admin, app_env, case):
    resp = _note(admin, case.id, "Checked the logs.", htmx=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert body.lstrip().startswith('<form id="note-form"')
    assert 'hx-swap-oob="beforeend:section.conversation"' in body
    assert "Checked the logs." in body
    assert outbox_rows(app_env) == []


def test_a_note_form_sent_twice_adds_one_note(admin, app_env, case):
    form = _note_form(admin, case.id, "Called Ada, no answer.")
    first = admin.post(f"/cases/{case.id}/notes", data=form)
    again = admin.post(f"/cases/{case.id}/notes", data=form)  # a double click, a resubmit

    assert first.status_code == 303
    assert again.status_code == 303
    notes = [m for m in messages_of(app_env, case.id) if m.direction == "note"]
    assert [n.text for n in notes] == ["Called Ada, no answer."]


def test_the_same_words_in_two_note_forms_are_two_notes(admin, app_env, case):
    assert _note(admin, case.id, "Waiting for the part.").status_code == 303
    assert _note(admin, case.id, "Waiting for the part.").status_code == 303

    notes = [m for m in messages_of(app_env, case.id) if m.direction == "note"]
    assert len(notes) == 2


def test_a_fresh_note_form_after_a_note_has_a_new_key(admin, app_env, case):
    form = _note_form(admin, case.id, "First look done.")
    resp = admin.post(f"/cases/{case.id}/notes", data=form, headers={"HX-Request": "true"})
    fresh = re.search(r'name="key" value="([^"]+)"', resp.get_data(as_text=True)).group(1)

    assert fresh != form["key"]


def test_the_api_gives_a_note_no_message_id(admin, app_env, case):
    assert _note(admin, case.id, "Checked the printer logs.").status_code == 303
    token = api_token(admin)
    body = admin.get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"}).get_json()
    (item,) = [i for i in body["items"] if i["id"] == case.id]
    first, note = item["messages"][0], item["messages"][-1]

    assert note["direction"] == "note"
    assert note["message_id"] is None
    assert first["message_id"] == "<first@ada.example>"


def test_a_reply_after_a_note_does_not_mention_the_note(
    admin, app_env, case, smtp_server, run_worker
):
    assert _note(admin, case.id, "Internal: she is a VIP.").status_code == 303
    assert comment(admin, case.id, "We are on it.").status_code == 303
    run_worker()

    (row,) = outbox_rows(app_env)
    assert "<first@ada.example>" in row.references_ids
    assert "invalid" not in row.references_ids
    assert b"invalid" not in smtp_server.messages[-1].data


def test_an_empty_note_is_refused_next_to_its_field(admin, app_env, case):
    resp = _note(admin, case.id, "  ")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert 'id="note-error" role="alert">Write the note first.' in page
    assert len(messages_of(app_env, case.id)) == 1


def test_a_reply_is_emailed_with_the_customers_cc(admin, app_env, case, smtp_server, run_worker):
    page = case_page(admin, case.id)
    # reply-all: Bob stays, our own mailbox and Ada (the To) do not
    assert _cc_field(page) == "bob@example.org"
    resp = comment(admin, case.id, "We are on it.")
    assert resp.status_code == 303
    run_worker()

    (sent,) = smtp_server.wait_for(1)
    assert sent.rcpt_tos == ["ada@example.org", "bob@example.org"]
    assert parsed(sent.data)["Cc"] == "bob@example.org"
    assert messages_of(app_env, case.id)[-1].cc_addresses == "bob@example.org"


def test_the_cc_field_is_what_the_reply_is_copied_to(admin, app_env, case, smtp_server, run_worker):
    resp = _reply(admin, case.id, "Copying Carol instead.", "Carol <carol@example.net>")
    assert resp.status_code == 303
    run_worker()
    (sent,) = smtp_server.wait_for(1)
    assert sent.rcpt_tos == ["ada@example.org", "carol@example.net"]
    assert parsed(sent.data)["Cc"] == "carol@example.net"


def test_an_emptied_cc_field_copies_nobody(admin, app_env, case, smtp_server, run_worker):
    assert _reply(admin, case.id, "Just to Ada.", "").status_code == 303
    run_worker()
    (sent,) = smtp_server.wait_for(1)
    assert sent.rcpt_tos == ["ada@example.org"]
    assert parsed(sent.data)["Cc"] is None


def test_a_bad_cc_is_shown_next_to_the_field_with_what_was_typed(admin, app_env, case):
    resp = _reply(admin, case.id, "Hello.", "bob@example.org, not an address")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert re.search(r'id="cc-error" role="alert">“not an address” is not an email address', page)
    assert _cc_field(page) == "bob@example.org, not an address"
    assert "Hello.</textarea>" in page
    assert outbox_rows(app_env) == []


# -- Status and assignee ---------------------------------------------------------------------


def test_pending_waits_for_the_customer_whose_next_email_opens_the_case_again(
    admin, app_env, case, mail_user
):
    resp = _post_top(admin, case.id, "status", "pending")
    assert resp.status_code == 303
    page = case_page(admin, case.id)
    assert f"Case #{case.number} is Pending." in page
    assert re.search(r'<option value="pending" selected>', page)
    assert _history(page) == [f"Set to Pending by {ADMIN_EMAIL} on the case page"]

    mail_user.deliver(
        email("Re: Printer jammed", sender="ada@example.org", to=mail_user.email,
              in_reply_to="<first@ada.example>")
    )  # fmt: skip
    fetch(app_env, case.mailbox_id)
    page = case_page(admin, case.id)
    assert '<span class="badge case-open">' in page
    assert _history(page)[-1] == "Reopened by ada@example.org with a new email"


def test_an_unknown_status_is_refused(admin, case):
    resp = _post_top(admin, case.id, "status", "archived")
    assert resp.status_code == 303
    assert "Choose Open, Pending or Closed." in case_page(admin, case.id)


def test_a_case_assigned_to_an_agent_is_theirs_in_the_list_and_the_api(app, admin, case):
    grace = agent(app, admin)
    page = case_page(admin, case.id)
    grace_id = re.search(rf'<option value="(\d+)">{AGENT_NAME}</option>', page).group(1)
    assert _post_top(admin, case.id, "assignee", grace_id).status_code == 303

    page = case_page(admin, case.id)
    assert f"Case #{case.number} is assigned to {AGENT_NAME}." in page
    assert _history(page) == [f"Assigned to {AGENT_NAME} by {ADMIN_EMAIL} on the case page"]
    mine = grace.get("/cases/?assignee=me").get_data(as_text=True)
    assert f'<tr id="case-{case.id}">' in mine
    assert f'<tr id="case-{case.id}">' not in admin.get("/cases/?assignee=me").get_data(
        as_text=True
    )
    unassigned = admin.get("/cases/?assignee=none").get_data(as_text=True)
    assert f'<tr id="case-{case.id}">' not in unassigned

    token = api_token(admin)
    body = admin.get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert body["items"][0]["assignee"]["name"] == AGENT_NAME
    assert body["items"][0]["history"][0] == {
        **body["items"][0]["history"][0], "action": "assigned", "to": AGENT_NAME,
    }  # fmt: skip

    assert _post_top(admin, case.id, "assignee", "").status_code == 303
    assert (
        _history(case_page(admin, case.id))[-1] == f"Unassigned by {ADMIN_EMAIL} on the case page"
    )


def test_an_assignee_who_is_not_in_the_team_is_refused(admin, case):
    assert _post_top(admin, case.id, "assignee", "999").status_code == 303
    assert "Choose an active member of the team, or Nobody." in case_page(admin, case.id)


# -- The message: HTML frame and attachments -------------------------------------------------


def test_attachments_read_as_a_type_and_a_size():
    sheet = SimpleNamespace(
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        size=24 * 1024, name="q3.xlsx",
    )  # fmt: skip
    pdf = SimpleNamespace(content_type="application/pdf", size=1_258_291, name="invoice.pdf")
    unknown = SimpleNamespace(content_type="application/octet-stream", size=812, name="x.docx")
    assert file_kind(sheet) == "Excel spreadsheet, 24 KB"
    assert file_kind(pdf) == "PDF document, 1.2 MB"
    assert file_kind(unknown) == "Word document, 812 bytes"


# -- The case list ---------------------------------------------------------------------------


def test_the_list_shows_the_last_message_and_sorts_by_any_column(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    first = open_case(app_env, box, mail_user, "Alpha", body="The printer is on fire. " * 10)
    second = open_case(app_env, box, mail_user, "Beta", sender="Bob <bob@example.org>")
    _note(admin, second.id, "Called Bob back.")

    page = admin.get("/cases/").get_data(as_text=True)
    row = re.search(rf'<tr id="case-{first.id}">.*?</tr>', page, re.S).group(0)
    preview = re.search(r'<span class="case-preview">(.*?)</span>', row, re.S).group(1)
    assert preview.startswith("The printer is on fire.")
    assert preview.endswith("…")
    assert len(preview) <= 120
    assert "<time datetime=" in row
    note_row = re.search(rf'<tr id="case-{second.id}">.*?</tr>', page, re.S).group(0)
    assert "Note:</span> Called Bob back." in note_row

    by_number = admin.get("/cases/?status=open&sort=number").get_data(as_text=True)
    assert by_number.index(f'id="case-{first.id}"') < by_number.index(f'id="case-{second.id}"')
    # the header's link reverses the order and keeps the filter
    assert 'href="/cases/?status=open&amp;sort=number&amp;dir=desc"' in by_number
    reverse = admin.get("/cases/?status=open&sort=number&dir=desc").get_data(as_text=True)
    assert reverse.index(f'id="case-{second.id}"') < reverse.index(f'id="case-{first.id}"')
    for column in ("subject", "contact", "status", "assignee", "last"):
        listed = admin.get(f"/cases/?sort={column}").get_data(as_text=True)
        assert listed.count('<tr id="case-') == 2, column


def test_the_filter_form_applies_as_it_changes_and_has_a_button_without_javascript(admin):
    page = admin.get("/cases/?status=open&sort=number").get_data(as_text=True)
    form = re.search(r'<form method="get" action="/cases/"[^>]*>', page, re.S).group(0)
    assert 'hx-trigger="change"' in form
    assert '<button type="submit" class="nojs-only">Filter</button>' in page
    assert '<select id="filter-assignee" name="assignee">' in page
    assert '<input type="hidden" name="sort" value="number">' in page  # the order is kept


def test_contacts_sort_naturally(admin, app_env):
    with new_session(app_env["DATABASE_URL"]) as db:
        for n in (10, 2, 1):
            db.add(Contact(email=f"c{n}@example.org", email_key=f"c{n}@example.org",
                           name=f"Customer {n}"))  # fmt: skip
        db.commit()
    page = admin.get("/contacts/").get_data(as_text=True)
    order = re.findall(r"Customer (\d+)", page)
    assert order == ["1", "2", "10"]
