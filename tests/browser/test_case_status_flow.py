"""Close, Reopen and Send and close on a case page, in a real browser with JavaScript: the
status swaps in place (the page is not reloaded) and the history says who did it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import (
    assert_clean,
    create_first_admin,
    refresh_until_visible,
    set_window_marker,
    swapped,
    window_marker,
)
from tests.helpers.mailboxes import make_mailbox
from tests.helpers.messages import email
from tests.helpers.web import ADMIN_EMAIL
from tests.servers.dovecot import free_ports


@pytest.mark.browser
def test_close_reopen_and_send_and_close_swap_the_status_in_place(
    page, live_server, live_stack, dovecot, mail_user, page_problems
):
    page_problems.watch(page)
    create_first_admin(page, live_server)
    mail_user.deliver(email("Printer jammed", sender="ada@example.org", to=mail_user.email))
    # Outgoing mail set up (nothing listens there: the send is retried), so the reply box is on
    box = make_mailbox(
        live_stack.env,
        dovecot,
        mail_user,
        initial_fetch_done=True,
        smtp_host="127.0.0.1",
        smtp_port=free_ports(1)[0],
        smtp_security="none",
    )
    page.goto(f"{live_server}/mailboxes/{box}")
    page.get_by_role("button", name="Fetch now").click()
    page.goto(f"{live_server}/cases/")
    refresh_until_visible(page, page.get_by_role("link", name="Printer jammed"))
    page.get_by_role("link", name="Printer jammed").click()
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")
    set_window_marker(page, "case")
    badge, history = page.locator("#case-status .badge"), page.locator(".case-history li")

    swapped(
        page, "#case-status", lambda: page.get_by_role("button", name="Close", exact=True).click()
    )
    expect(badge).to_have_text("closed")
    expect(history.last).to_contain_text(f"Closed by {ADMIN_EMAIL} on the case page")

    swapped(page, "#case-status", lambda: page.get_by_role("button", name="Reopen").click())
    expect(badge).to_have_text("open")
    expect(history.last).to_contain_text(f"Reopened by {ADMIN_EMAIL} on the case page")

    page.get_by_label("Reply", exact=True).fill("A new drum is on its way.")
    page.get_by_role("button", name="Send and close").click()
    expect(badge).to_have_text("closed")
    expect(history.last).to_contain_text(f"Closed by {ADMIN_EMAIL} with Send and close")
    expect(page.locator("section.conversation")).to_contain_text("A new drum is on its way.")
    assert window_marker(page) == "case", "the page was reloaded instead of swapped"
    assert_clean(page_problems)
