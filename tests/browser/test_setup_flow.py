"""First admin → New mailbox → Mailbox Setup → Continue, in a real browser.

The app runs under gunicorn with a real `rq worker` (tests/browser/conftest.py); the mailbox is
a real Dovecot user. Once with JavaScript (HTMX swaps, live validation, polling), once without
(plain forms, full-page re-render, Refresh), and the wrong-password path both ways.
At the end, regression tests for bugs these browser tests found (help text, Enter, hx-sync).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import (
    VERIFY_TIMEOUT,
    assert_clean,
    create_first_admin,
    expect_setup_count,
    field,
    fill_live,
    log_out_and_in,
    open_new_mailbox,
    refresh_until_visible,
    set_window_marker,
    swapped,
    window_marker,
)

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hello %d\r\n\r\nbody %d\r\n"
PORT_ERROR = "Enter a port between 1 and 65535."
# Chromium logs every 4xx document / XHR as a console error; 422 is the app's deliberate
# "form not valid, here it is again" status, so it is allowed where a 422 is expected.
LOG_422 = "the server responded with a status of 422"


# --- JavaScript on -------------------------------------------------------------------------

OTHER_SERVER = "Another IMAP or POP3 server"


@pytest.mark.browser
def test_setup_flow_with_javascript(
    page, live_server, live_stack, dovecot, mail_user, page_problems, tmp_path
):
    for i in range(4):
        mail_user.deliver(MESSAGE % (i, i))
    page_problems.watch(page)

    create_first_admin(page, live_server)
    expect(page.locator("html")).to_have_class("js")  # app.js ran (under the CSP)
    log_out_and_in(page)
    open_new_mailbox(page)
    set_window_marker(page, "form")

    # Authentication Type swaps the Connection section: OAuth fields shown, Basic hidden
    basic, oauth = page.locator("#auth-basic"), page.locator("#auth-oauth")
    expect(basic).to_be_visible()
    expect(oauth).to_be_hidden()
    expect(page.get_by_role("button", name="Apply preset")).to_be_hidden()  # no-JS only
    swapped(page, "#connection", lambda: field(page, "Authentication Type").select_option("oauth"))
    expect(oauth).to_be_visible()
    expect(basic).to_be_hidden()
    expect(field(page, "Client ID")).to_be_visible()
    expect(field(page, "Redirect URI")).to_have_value(live_server + "/oauth/callback")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()  # JS only
    swapped(page, "#connection", lambda: field(page, "Authentication Type").select_option("basic"))
    expect(basic).to_be_visible()
    expect(oauth).to_be_hidden()

    # The Gmail preset fills Host and Port in place, and chooses OAuth
    swapped(page, "#connection", lambda: field(page, "Gmail").check())
    expect(field(page, "Host")).to_have_value("imap.gmail.com")
    expect(field(page, "Port")).to_have_value("993")
    expect(field(page, "Authentication Type")).to_have_value("oauth")
    swapped(page, "#connection", lambda: field(page, OTHER_SERVER).check())
    expect(field(page, OTHER_SERVER)).to_be_checked()
    swapped(page, "#connection", lambda: field(page, "Authentication Type").select_option("basic"))
    assert window_marker(page) == "form", "the page was reloaded instead of swapped"

    fill_live(page, "name", "Name", "Support")
    fill_live(page, "email_address", "Email Address", mail_user.email)
    fill_live(page, "password", "Password", mail_user.password)
    fill_live(page, "host", "Host", "127.0.0.1")

    # Live validation: a bad port is reported next to Port when the field is left
    fill_live(page, "port", "Port", "70000")
    port_row = page.locator("#field-port")
    expect(port_row.locator("p.error")).to_have_text(PORT_ERROR)
    expect(port_row).to_have_class(re.compile(r"\bhas-error\b"))
    expect(field(page, "Port")).to_have_attribute("aria-invalid", "true")

    # Saving anyway: HTMX swaps the re-rendered form (422) in place, everything typed kept
    with page.expect_response(
        lambda r: r.url.endswith("/mailboxes/new") and r.request.method == "POST"
    ) as posted:
        page.get_by_role("button", name="Save").click()
    assert posted.value.status == 422
    expect(page.locator("p.error.summary")).to_contain_text("The mailbox was not saved")
    expect(port_row.locator("p.error")).to_have_text(PORT_ERROR)
    expect(field(page, "Name")).to_have_value("Support")
    expect(field(page, "Password")).not_to_have_value("")
    assert window_marker(page) == "form"

    fill_live(page, "port", "Port", str(dovecot.imaps_port))
    expect(port_row.locator("p.error")).to_have_count(0)
    expect(page.locator("#mailbox-form .field .error")).to_have_count(0)
    # values typed before the swaps are all still there
    expect(field(page, "Name")).to_have_value("Support")
    expect(field(page, "Email Address")).to_have_value(mail_user.email)
    expect(field(page, "Host")).to_have_value("127.0.0.1")
    assert window_marker(page) == "form"
    page.screenshot(path=str(tmp_path / "js-form-filled.png"), full_page=True)

    # Hold the worker so the waiting state, then the polled update, are both seen
    live_stack.stop_worker()
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/setup$"))
    expect(page.get_by_role("heading", name="Mailbox Setup")).to_be_visible()
    progress = page.locator("#setup-progress")
    expect(progress).to_contain_text("Waiting for a worker to pick up the check")
    expect(page.get_by_role("link", name="Refresh")).to_be_hidden()  # no-JS only
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(0)  # <noscript> is inert
    page.screenshot(path=str(tmp_path / "js-setup-waiting.png"), full_page=True)
    set_window_marker(page, "setup")

    live_stack.start_worker()
    expect(progress.locator(".count")).to_have_text(
        "4 messages in this mailbox", timeout=VERIFY_TIMEOUT
    )
    expect(progress).to_contain_text("(INBOX)")
    assert window_marker(page) == "setup", "the result came by a reload, not HTMX polling"
    page.screenshot(path=str(tmp_path / "js-setup-result.png"), full_page=True)

    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+$"))
    expect(page.locator("p.flash.ok")).to_contain_text("Support is on: the first fetch has started")
    expect(page.locator("h1 .badge")).to_have_text("active")
    expect(page.locator("dl.facts")).to_contain_text("4 messages")
    page.get_by_role("link", name="Mailboxes").first.click()
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    expect(page.locator("table.list tbody tr .badge")).to_have_text("active")

    assert_clean(page_problems, allowed=(LOG_422,))


# --- JavaScript off ------------------------------------------------------------------------


@pytest.mark.browser
def test_setup_flow_without_javascript(
    nojs_page, live_server, live_stack, dovecot, mail_user, page_problems, tmp_path
):
    page = nojs_page
    for i in range(2):
        mail_user.deliver(MESSAGE % (i, i))
    page_problems.watch(page)

    create_first_admin(page, live_server)
    expect(page.locator("html")).to_have_class("no-js")
    open_new_mailbox(page)

    # Without JS both authentication fieldsets are shown, with their labels
    expect(page.locator("#auth-basic")).to_be_visible()
    expect(page.locator("#auth-oauth")).to_be_visible()
    expect(field(page, "Password")).to_be_visible()
    expect(field(page, "Client ID")).to_be_visible()
    expect(page.get_by_role("button", name="Copy")).to_be_hidden()  # JS only

    # "Apply preset" is the no-JS way to fill in a preset (and Gmail chooses OAuth)
    field(page, "Gmail").check()
    page.get_by_role("button", name="Apply preset").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/new$"))
    expect(field(page, "Host")).to_have_value("imap.gmail.com")
    expect(field(page, "Port")).to_have_value("993")
    expect(field(page, "Authentication Type")).to_have_value("oauth")
    field(page, OTHER_SERVER).check()
    field(page, "Authentication Type").select_option("basic")

    field(page, "Name").fill("Support desk")
    field(page, "Description").fill("typed by hand")
    field(page, "Email Address").fill(mail_user.email)
    field(page, "Password").fill(mail_user.password)
    field(page, "Host").fill("127.0.0.1")
    field(page, "Port").fill("70000")
    with page.expect_response(
        lambda r: r.url.endswith("/mailboxes/new") and r.request.method == "POST"
    ) as posted:
        page.get_by_role("button", name="Save").click()
    assert posted.value.status == 422
    page.wait_for_load_state()

    # The whole page again: the error next to Port, everything typed kept
    expect(page).to_have_url(re.compile(r"/mailboxes/new$"))
    expect(page.get_by_role("heading", name="New mailbox")).to_be_visible()
    expect(page.locator("p.error.summary")).to_contain_text("The mailbox was not saved")
    expect(page.locator("#field-port p.error")).to_have_text(PORT_ERROR)
    expect(page.locator("#mailbox-form p.error:not(.summary)")).to_have_count(1)
    expect(field(page, "Name")).to_have_value("Support desk")
    expect(field(page, "Email Address")).to_have_value(mail_user.email)
    expect(field(page, "Description")).to_have_value("typed by hand")
    expect(field(page, "Host")).to_have_value("127.0.0.1")
    expect(field(page, "Port")).to_have_value("70000")
    page.screenshot(path=str(tmp_path / "nojs-form-error.png"), full_page=True)

    live_stack.stop_worker()  # so the waiting page is seen for sure
    field(page, "Port").fill(str(dovecot.imaps_port))
    if not field(page, "Password").input_value():
        field(page, "Password").fill(mail_user.password)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/setup$"))
    progress = page.locator("#setup-progress")
    expect(progress).to_contain_text("Waiting for a worker to pick up the check")
    expect(page.get_by_role("link", name="Refresh")).to_be_visible()
    expect(page.locator('noscript meta[http-equiv="refresh"]')).to_have_count(1)

    live_stack.start_worker()
    refresh_until_visible(page, progress.locator(".count"))
    expect(progress.locator(".count")).to_have_text("2 messages in this mailbox")
    expect(page.get_by_role("link", name="Refresh")).to_have_count(0)
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(0)  # no refreshing when done
    page.screenshot(path=str(tmp_path / "nojs-setup-result.png"), full_page=True)

    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+$"))
    expect(page.locator("p.flash.ok")).to_contain_text(
        "Support desk is on: the first fetch has started"
    )
    expect(page.locator("h1 .badge")).to_have_text("active")

    assert_clean(page_problems, allowed=(LOG_422,))


# --- wrong password ------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
def test_wrong_password_is_reported_and_back_keeps_the_values(
    javascript, request, live_server, dovecot, mail_user, page_problems, tmp_path
):
    page = request.getfixturevalue("page" if javascript else "nojs_page")
    mail_user.deliver(MESSAGE % (1, 1))
    page_problems.watch(page)
    create_first_admin(page, live_server)
    open_new_mailbox(page)

    values = {
        "Name": "Help",
        "Email Address": mail_user.email,
        "Host": "127.0.0.1",
        "Port": str(dovecot.imaps_port),
    }
    names = {
        "Name": "name",
        "Email Address": "email_address",
        "Host": "host",
        "Port": "port",
        "Password": "password",
    }
    for label, value in {**values, "Password": "not-the-password"}.items():
        if javascript:
            fill_live(page, names[label], label, value)
        else:
            field(page, label).fill(value)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/setup$"))

    rejected = page.get_by_text("rejected the user name or password")

    def wait_for_rejection():
        if javascript:
            expect(rejected).to_be_visible(timeout=VERIFY_TIMEOUT)
        else:
            refresh_until_visible(page, rejected)

    wait_for_rejection()
    result = page.locator("#setup-progress .result.error")
    expect(result).to_have_attribute("role", "alert")
    expect(result).to_contain_text("app password")  # the advice
    expect(page.get_by_role("button", name="Check again")).to_be_visible()
    expect(page.get_by_role("link", name="Edit settings")).to_be_visible()
    expect(page.get_by_role("button", name="Continue")).to_have_count(0)
    assert "not-the-password" not in page.content()
    page.screenshot(
        path=str(tmp_path / f"wrong-password-{request.node.callspec.id}.png"), full_page=True
    )

    # Check again runs the check again, with the same answer
    page.get_by_role("button", name="Check again").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/setup$"))
    wait_for_rejection()

    # Edit settings: the form at the password, with everything kept, the saved password not shown
    page.get_by_role("link", name="Edit settings").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/edit\?focus=password#field-password$"))
    expect(page.locator("#field-password")).to_have_class(re.compile(r"\bfocus\b"))
    expect(page.get_by_role("heading", name="Edit Help")).to_be_visible()
    for label, value in values.items():
        expect(field(page, label)).to_have_value(value)
    expect(field(page, "Password")).to_have_value("")
    expect(field(page, "Password")).to_have_attribute("placeholder", re.compile("saved"))
    expect(page.locator("#field-password .saved")).to_be_visible()
    assert "not-the-password" not in page.content()

    # and with the right password the same mailbox verifies
    if javascript:
        fill_live(page, "password", "Password", mail_user.password)
    else:
        field(page, "Password").fill(mail_user.password)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/setup$"))
    expect_setup_count(page, javascript, "1 message in this mailbox")

    assert_clean(page_problems)


# --- regressions found by these tests -----------------------------------------------


@pytest.mark.browser
def test_live_validation_keeps_the_help_text(page, live_server, mail_user):
    create_first_admin(page, live_server)
    open_new_mailbox(page)
    help_text = page.locator("#field-email_address small.help")
    expect(help_text).to_have_text("Must be unique across mailboxes.")
    fill_live(page, "email_address", "Email Address", mail_user.email)
    expect(help_text).to_have_text("Must be unique across mailboxes.", timeout=2_000)


@pytest.mark.browser
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
def test_enter_in_a_text_field_saves(javascript, request, live_server, dovecot, mail_user):
    page = request.getfixturevalue("page" if javascript else "nojs_page")
    create_first_admin(page, live_server)
    open_new_mailbox(page)
    values = {
        "name": ("Name", "Support"),
        "email_address": ("Email Address", mail_user.email),
        "password": ("Password", mail_user.password),
        "host": ("Host", "127.0.0.1"),
        "port": ("Port", str(dovecot.imaps_port)),
    }
    for name, (label, value) in values.items():
        if javascript:
            fill_live(page, name, label, value)
        else:
            field(page, label).fill(value)
    field(page, "Name").press("Enter")
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/setup$"), timeout=5_000)


@pytest.mark.browser
def test_a_fixed_field_loses_its_error_while_another_field_is_validated(page, live_server, dovecot):
    create_first_admin(page, live_server)
    open_new_mailbox(page)
    fill_live(page, "port", "Port", "70000")
    expect(page.locator("#field-port p.error")).to_have_text(PORT_ERROR)

    held = []  # hold the Host check in flight, as on a slow network
    page.route("**/mailboxes/validate/host", lambda route: held.append(route))
    field(page, "Host").fill("127.0.0.1")
    field(page, "Host").press("Tab")
    page.wait_for_timeout(300)  # let htmx send it: the route holds it
    assert len(held) == 1
    field(page, "Port").fill(str(dovecot.imaps_port))  # the user fixes the port meanwhile
    field(page, "Port").press("Tab")
    page.wait_for_timeout(300)
    for route in held:
        route.continue_()
    expect(page.locator("#field-host p.error")).to_have_count(0)
    expect(page.locator("#field-port p.error")).to_have_count(0, timeout=3_000)
