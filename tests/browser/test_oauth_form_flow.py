"""Get Authorization Code on New Mailbox, in a real browser: it saves the form as Save does,
goes straight to the provider, and the callback ends on Mailbox Setup with the count. With
JavaScript (htmx posts the form and follows HX-Redirect) and without (a plain submit button of
the same form)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_oauth_flow import (  # noqa: F401  (live_client is a fixture)
    AUTHORIZED_FLASH,
    MESSAGE,
    Navigations,
    fill_oauth_mailbox,
    live_client,
    oauth_values,
)
from tests.helpers.browser import (
    SWAP_TIMEOUT,
    assert_clean,
    create_first_admin,
    expect_setup_count,
    open_new_mailbox,
)


@pytest.mark.browser
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
def test_get_authorization_code_on_new_mailbox_ends_on_setup_with_the_count(
    javascript,
    request,
    live_server,
    oauth_server,
    oauth_dovecot,
    oauth_mail_user,
    live_client,  # noqa: F811
    page_problems,
):
    page = request.getfixturevalue("page" if javascript else "nojs_page")
    page_problems.watch(page)
    oauth_mail_user.deliver(MESSAGE % (1, 1))
    create_first_admin(page, live_server)
    open_new_mailbox(page)
    expect(page).to_have_title("New Mailbox · mailchannel")
    values = oauth_values(
        oauth_mail_user,
        oauth_dovecot,
        oauth_server.authorize_url,
        oauth_server.token_url,
        live_client,
    )
    fill_oauth_mailbox(page, javascript, live_server, values)
    oauth_fields = page.locator("#auth-oauth")
    expect(oauth_fields.locator("legend")).to_contain_text("OAuth Configuration")

    navigations = Navigations(page)
    oauth_fields.get_by_role("button", name="Get Authorization Code").click()
    expect(page.locator("p.flash.ok")).to_have_text(AUTHORIZED_FLASH, timeout=SWAP_TIMEOUT)
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/setup$"))
    assert navigations.to(oauth_server.authorize_url + "?"), navigations.urls
    assert oauth_server.token_requests == ["authorization_code"]
    expect_setup_count(page, javascript, "1 message in this mailbox")
    assert_clean(page_problems)
