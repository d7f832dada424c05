"""The mailbox form as a guide, in a real browser: choosing Gmail switches to OAuth at once and
the Basic warning goes; options whose parent is off fold away; with JavaScript off the same
choice saves an OAuth mailbox with Google's servers filled in."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import (
    assert_clean,
    create_first_admin,
    field,
    fill_live,
    open_new_mailbox,
    swapped,
)

SPAM_LABEL = "Prevent spam by sending a confirmation to confirm that sender is a person"


@pytest.mark.browser
def test_choosing_gmail_switches_to_oauth_and_hides_the_basic_warning(
    page, live_server, page_problems
):
    page_problems.watch(page)
    create_first_admin(page, live_server)
    open_new_mailbox(page)
    warning = page.locator("#auth-warning")

    fill_live(page, "host", "Host", "imap.gmail.com")  # Basic for now: Google refuses it
    expect(warning).to_contain_text("Google has deprecated Basic authentication")

    swapped(page, "#connection", lambda: field(page, "Gmail").check())
    expect(field(page, "Authentication Type")).to_have_value("oauth")
    expect(warning).to_be_hidden()
    expect(page.locator("#auth-oauth")).to_be_visible()
    expect(field(page, "Password")).to_be_hidden()
    expect(field(page, "Scope")).to_be_hidden()  # folded under Advanced: Gmail fills it in
    expect(page.locator("#field-tenant")).to_have_count(0)

    swapped(page, "#connection", lambda: field(page, "Microsoft 365").check())
    page.locator("#oauth-advanced summary").click()
    expect(field(page, "Tenant")).to_be_visible()
    expect(field(page, "Scope")).to_have_value(re.compile("IMAP.AccessAsUser.All"))
    assert_clean(page_problems)


@pytest.mark.browser
def test_options_whose_parent_is_off_fold_away(page, live_server, page_problems):
    page_problems.watch(page)
    create_first_admin(page, live_server)
    open_new_mailbox(page)
    confirmation = page.locator("#confirmation-settings")
    no_new_case = page.locator("#no-new-case")

    expect(confirmation).to_be_hidden()
    field(page, SPAM_LABEL).check()
    expect(confirmation).to_be_visible()

    expect(no_new_case).to_be_hidden()
    field(page, "Allow New Case to be Created").uncheck()
    expect(no_new_case).to_be_visible()
    assert_clean(page_problems)


@pytest.mark.browser
def test_without_javascript_gmail_saves_an_oauth_mailbox(nojs_page, live_server, page_problems):
    page = nojs_page
    page_problems.watch(page)
    create_first_admin(page, live_server)
    open_new_mailbox(page)
    # everything is shown: the folded options and both kinds of login
    expect(page.locator("#confirmation-settings")).to_be_visible()
    expect(page.locator("#no-new-case")).to_be_visible()

    field(page, "Gmail").check()
    field(page, "Name").fill("Gmail desk")
    field(page, "Email Address").fill("desk@example.com")
    field(page, "Client ID").fill("client-1")
    field(page, "Client Secret").fill("secret-1")
    page.get_by_role("button", name="Save").click()

    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/setup$"))
    expect(page.locator("#oauth-status")).to_contain_text("Not authorized yet")
    expect(page.locator("p.lead")).to_contain_text("imap.gmail.com:993")
    assert_clean(page_problems)
