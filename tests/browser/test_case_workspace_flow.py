"""The case workspace in a real browser, with JavaScript and without: Reply and Internal note,
of which only Reply sends mail (to the customer and their Cc); status and assignee at the top;
the HTML version in a frame that grows to its content (fixed height without JavaScript)."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.helpers.browser import (
    assert_clean,
    create_first_admin,
    refresh_until_visible,
    set_window_marker,
    swapped,
    window_marker,
)
from tests.helpers.mailboxes import make_mailbox, smtp_fields
from tests.helpers.messages import parsed
from tests.helpers.web import ADMIN_EMAIL

SEND_TIMEOUT = 30.0  # seconds for the live worker to hand the reply to the SMTP server
QUIET = 2.0  # seconds to wait for mail that must not come (the note)


def tall_email(to: str) -> bytes:
    """Ada's email, copied to Bob and to us, with an HTML part much taller than the frame."""
    paragraphs = "".join(f"<p>Line {i} of the printer report.</p>" for i in range(60))
    return (
        "From: Ada Lovelace <ada@example.org>\r\n"
        f"To: {to}\r\n"
        f"Cc: Bob <bob@example.org>, {to}\r\n"
        "Subject: Printer report\r\n"
        "Message-ID: <report@ada.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe printer report.\r\n"
        f"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>{paragraphs}"
        "</body></html>\r\n--alt--\r\n"
    ).encode()


def open_the_case(page: Page, live_server: str, live_stack, dovecot, mail_user, smtp_server):
    create_first_admin(page, live_server)
    mail_user.deliver(tall_email(mail_user.email))
    box = make_mailbox(live_stack.env, dovecot, mail_user, initial_fetch_done=True,
                       **smtp_fields(smtp_server))  # fmt: skip
    page.goto(f"{live_server}/mailboxes/{box}")
    page.get_by_role("button", name="Fetch now").click()
    page.goto(f"{live_server}/cases/")
    refresh_until_visible(page, page.get_by_role("link", name="Printer report"))
    page.get_by_role("link", name="Printer report").click()
    page.wait_for_load_state("load")


def only_the_reply_was_sent(smtp_server, note: str, reply: str) -> None:
    (sent,) = smtp_server.wait_for(1, timeout=SEND_TIMEOUT)
    time.sleep(QUIET)  # the note was written first: its mail, if any, would be here by now
    assert len(smtp_server.messages) == 1
    assert sent.rcpt_tos == ["ada@example.org", "bob@example.org"]
    assert parsed(sent.data)["Cc"] == "bob@example.org"
    assert reply.encode() in sent.data
    assert note.encode() not in sent.data


@pytest.mark.browser
def test_reply_and_internal_note_with_javascript(
    page, live_server, live_stack, dovecot, mail_user, smtp_server, page_problems
):
    page_problems.watch(page)
    open_the_case(page, live_server, live_stack, dovecot, mail_user, smtp_server)
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")
    set_window_marker(page, "case")

    # the HTML version is shown, grown to its content (60 paragraphs: far taller than 20rem)
    page.wait_for_function(
        "() => document.querySelector('iframe[data-grow]').getBoundingClientRect().height > 900"
    )
    expect(page.locator("details.plain-text summary")).to_have_text("Plain text")

    # one form at a time: the Internal note tab
    expect(page.get_by_label("Internal note", exact=True)).to_be_hidden()
    page.get_by_role("link", name="Internal note").click()
    note = "Ada's printer is under warranty."
    page.get_by_label("Internal note", exact=True).fill(note)
    page.get_by_role("button", name="Add internal note").click()
    expect(page.locator("article.message.note")).to_contain_text(note)

    page.get_by_role("link", name="Reply", exact=True).click()
    expect(page.get_by_label("Cc", exact=True)).to_have_value("bob@example.org")
    reply = "A technician comes on Monday."
    page.get_by_label("Reply", exact=True).fill(reply)
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("article.message.outgoing")).to_contain_text(reply)
    only_the_reply_was_sent(smtp_server, note, reply)

    # status and assignee apply as soon as they change
    badge = page.locator("#case-status .badge").first
    swapped(
        page,
        "#case-status",
        lambda: page.get_by_label("Status", exact=True).select_option("pending"),
    )
    expect(badge).to_have_text("pending")
    swapped(
        page,
        "#case-status",
        lambda: page.get_by_label("Assignee", exact=True).select_option(index=1),
    )
    expect(page.locator(".case-history li").last).to_contain_text(
        f"Assigned to admin by {ADMIN_EMAIL}"
    )
    assert window_marker(page) == "case", "the page was reloaded instead of swapped"

    # the case list filters as a choice changes, in place
    page.locator("p.crumbs").get_by_role("link", name="Cases").click()
    page.locator("nav.filters").get_by_role("link", name="Pending").click()
    expect(page).to_have_url(re.compile(r"status=pending"))
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")
    set_window_marker(page, "list")
    expect(page.get_by_role("button", name="Filter")).to_be_hidden()
    assignee = page.get_by_label("Assignee", exact=True)
    swapped(page, "#case-list", lambda: assignee.select_option("none"))
    expect(page.get_by_role("link", name="Printer report")).to_have_count(0)
    swapped(page, "#case-list", lambda: assignee.select_option("me"))
    expect(page).to_have_url(re.compile(r"status=pending&assignee=me"))
    expect(page.locator("#case-list .case-preview")).to_have_text(f"Reply: {reply}")
    assert window_marker(page) == "list", "the list was reloaded instead of swapped"
    assert_clean(page_problems)


@pytest.mark.browser
def test_reply_and_internal_note_without_javascript(
    nojs_page, live_server, live_stack, dovecot, mail_user, smtp_server
):
    page = nojs_page
    open_the_case(page, live_server, live_stack, dovecot, mail_user, smtp_server)

    # the frame keeps its fixed height; the plain text is one click away
    height = page.locator("iframe[data-grow]").evaluate("f => f.getBoundingClientRect().height")
    assert 200 < height < 500
    expect(page.get_by_role("link", name="Plain text")).to_be_visible()

    # both forms are on the page
    note = "Called Ada: she is in the office until 5."
    page.get_by_label("Internal note", exact=True).fill(note)
    page.get_by_role("button", name="Add internal note").click()
    expect(
        page.get_by_text("The internal note was added. It is not emailed to anyone.")
    ).to_be_visible()
    expect(page.locator("article.message.note")).to_contain_text(note)

    expect(page.get_by_label("Cc", exact=True)).to_have_value("bob@example.org")
    reply = "The drum is replaced."
    page.get_by_label("Reply", exact=True).fill(reply)
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("article.message.outgoing")).to_contain_text(reply)
    only_the_reply_was_sent(smtp_server, note, reply)

    page.get_by_label("Status", exact=True).select_option("pending")
    page.get_by_role("button", name="Set status").click()
    expect(page.locator("#case-status .badge").first).to_have_text("pending")
    page.get_by_label("Assignee", exact=True).select_option(index=1)
    page.get_by_role("button", name="Assign").click()
    expect(page.locator(".case-history li").last).to_contain_text(
        f"Assigned to admin by {ADMIN_EMAIL}"
    )
