"""Playwright steps shared by the browser tests (tests/browser/)."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.helpers.web import ADMIN_EMAIL, ADMIN_PASSWORD

SWAP_TIMEOUT = 10_000  # ms: an HTMX round trip to 127.0.0.1
VERIFY_TIMEOUT = 20_000  # ms: the worker connects to Dovecot and counts
# The app has no favicon: Chromium's automatic /favicon.ico request gets a 404 (cosmetic).
FAVICON_404 = "status of 404 (NOT FOUND) (http://127.0.0.1:"  # only ever for /favicon.ico, below


def create_first_admin(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    expect(page).to_have_url(re.compile(r"/auth/first-admin$"))
    expect(page.get_by_role("heading", name="Welcome to mailchannel")).to_be_visible()
    page.get_by_label("Email", exact=True).fill(ADMIN_EMAIL)
    page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_label("Password again", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Create admin").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/$"))
    expect(page.get_by_role("heading", name="Mailboxes")).to_be_visible()
    expect(page.locator(".who")).to_have_text(ADMIN_EMAIL)


def log_out_and_in(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/auth/login$"))
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    page.get_by_label("Email", exact=True).fill(ADMIN_EMAIL)
    page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/$"))
    expect(page.locator(".who")).to_have_text(ADMIN_EMAIL)


def open_new_mailbox(page: Page) -> None:
    page.get_by_role("link", name="New mailbox").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/new$"))
    expect(page.get_by_role("heading", name="New mailbox")).to_be_visible()


def field(page: Page, label: str):
    return page.get_by_label(label, exact=True)


def swapped(page: Page, selector: str, action) -> None:
    """Run action (which makes HTMX replace `selector`) and wait until the new element is in."""
    page.locator(selector).evaluate("el => { el.dataset.stale = '1'; }")
    action()
    page.wait_for_selector(f"{selector}:not([data-stale])", timeout=SWAP_TIMEOUT)


def fill_live(page: Page, name: str, label: str, value: str) -> None:
    """Type a value, leave the field (Tab) and wait for live validation to re-render it."""
    # A person cannot type before htmx has processed the page; a test can, so it waits.
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")

    def type_and_leave():
        control = field(page, label)
        control.fill(value)
        control.press("Tab")

    swapped(page, f"#field-{name}", type_and_leave)


def set_window_marker(page: Page, value: str) -> None:
    page.evaluate("v => { window.__sameDocument = v; }", value)


def window_marker(page: Page):
    return page.evaluate("() => window.__sameDocument")


def refresh_until_visible(page: Page, locator, deadline_seconds: float = 30.0) -> None:
    """No JavaScript: follow the page's Refresh link (or reload) until locator shows up."""
    deadline = time.monotonic() + deadline_seconds
    while not locator.is_visible():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"gave up waiting for {locator}; the page says:\n"
                + page.locator("main").inner_text()
            )
        refresh = page.get_by_role("link", name="Refresh")
        try:
            if refresh.is_visible():
                refresh.click(timeout=5_000)
            else:
                page.reload(timeout=5_000)
            page.wait_for_load_state("load", timeout=5_000)
        except PlaywrightError:
            pass  # the <noscript> meta refresh navigated at the same moment: just look again
        page.wait_for_timeout(250)


def fetch_into_cases(page: Page, live_server: str, env: dict, dovecot, user, subjects) -> int:
    """A mailbox of this Dovecot user, Fetch now pressed on its page, and the case list
    refreshed until a case of each subject shows; the mailbox's id."""
    from tests.helpers.mailboxes import make_mailbox

    box = make_mailbox(env, dovecot, user, initial_fetch_done=True)
    page.goto(f"{live_server}/mailboxes/{box}")
    page.get_by_role("button", name="Fetch now").click()
    page.goto(f"{live_server}/cases/")
    for subject in subjects:
        refresh_until_visible(page, page.get_by_role("link", name=subject))
    return box


def assert_clean(problems, allowed=()) -> None:
    assert problems.csp_violations() == [], problems.csp_violations()
    unexpected = [
        m
        for m in problems.unexpected(allowed)
        if not (FAVICON_404 in m and m.endswith("/favicon.ico)"))
    ]
    assert unexpected == [], unexpected


def expect_setup_count(page: Page, javascript: bool, text: str) -> None:
    """Mailbox Setup shows the count: polled in by htmx, or by Refresh without JavaScript."""
    count = page.locator("#setup-progress .count")
    if javascript:
        expect(count).to_have_text(text, timeout=VERIFY_TIMEOUT)
    else:
        refresh_until_visible(page, count)
        expect(count).to_have_text(text)
