"""Typing a search into the case list, in a real browser: with JavaScript the list follows the
words typed (no reload, the box keeps its focus and the filters keep the search); without,
the Search button does the same."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import (
    assert_clean,
    create_first_admin,
    fetch_into_cases,
    set_window_marker,
    window_marker,
)
from tests.helpers.messages import email
from tests.helpers.web import ADMIN_EMAIL, ADMIN_PASSWORD


def _two_cases(page, live_server, live_stack, dovecot, mail_user) -> None:
    create_first_admin(page, live_server)
    body = "The COBOL compiler stopped at midnight.\n"
    mail_user.deliver(
        email("Compiler crash", sender="grace@navy.example", to=mail_user.email, body=body)
    )
    mail_user.deliver(email("Printer jammed", sender="ada@example.org", to=mail_user.email))
    subjects = ("Printer jammed", "Compiler crash")
    fetch_into_cases(page, live_server, live_stack.env, dovecot, mail_user, subjects)


@pytest.mark.browser
def test_typing_a_search_narrows_the_list_in_place(
    page, live_server, live_stack, dovecot, mail_user, page_problems
):
    page_problems.watch(page)
    _two_cases(page, live_server, live_stack, dovecot, mail_user)
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")
    set_window_marker(page, "list")
    box = page.get_by_role("searchbox", name="Search")
    box.press_sequentially("cobol", delay=50)
    expect(page.get_by_role("link", name="Printer jammed")).to_have_count(0)
    expect(page.get_by_role("link", name="Compiler crash")).to_be_visible()
    expect(page).to_have_url(f"{live_server}/cases/?q=cobol")
    expect(box).to_be_focused()
    expect(page.get_by_role("link", name="Pending")).to_have_attribute(
        "href", "/cases/?q=cobol&status=pending"
    )
    box.fill("zebra")
    expect(page.locator("#case-list")).to_contain_text("No cases match “zebra”")
    assert window_marker(page) == "list", "the page was reloaded instead of swapped"
    assert_clean(page_problems)


@pytest.mark.browser
def test_the_search_button_works_without_javascript(
    page, nojs_page, live_server, live_stack, dovecot, mail_user
):
    _two_cases(page, live_server, live_stack, dovecot, mail_user)
    nojs_page.goto(live_server + "/auth/login")
    nojs_page.get_by_label("Email", exact=True).fill(ADMIN_EMAIL)
    nojs_page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    nojs_page.get_by_role("button", name="Log in").click()
    nojs_page.goto(live_server + "/cases/")
    nojs_page.get_by_role("searchbox", name="Search").fill("grace@navy.example")
    nojs_page.get_by_role("button", name="Search").click()
    expect(nojs_page.get_by_role("link", name="Compiler crash")).to_be_visible()
    expect(nojs_page.get_by_role("link", name="Printer jammed")).to_have_count(0)
    expect(nojs_page.get_by_role("searchbox", name="Search")).to_have_value("grace@navy.example")
