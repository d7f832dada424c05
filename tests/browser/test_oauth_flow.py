"""OAuth in a real browser: New mailbox → Mailbox Setup → Get Authorization Code → the provider
→ the callback → Mailbox Setup with the message count → Continue.

The app runs under gunicorn with a real `rq worker` (tests/browser/conftest.py); the provider is
the Authlib authorization server of tests/servers/oauth.py (it consents by itself as
oauth_mail_user), and the mailbox is a Dovecot user whose XOAUTH2 logins are checked against that
server's introspection endpoint. Once with JavaScript (HTMX swaps and polling), once without
(plain forms, Refresh), and the provider's "access_denied" both ways.

The Auth URL is the server's plain http:// loopback address, which the form accepts and the
Content-Security-Policy's form-action must let the browser be redirected to. The JavaScript flow
runs a second time against an https:// Auth URL, as at Google and Microsoft: the same
authorization server, also served over TLS with the test CA's localhost certificate
(`oauth_https`; the browser context ignores that it does not know the CA). The app's token
request, made from the server, always goes to the http:// Access Token URL.
"""

from __future__ import annotations

import re
import ssl
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from tests.helpers.browser import (
    SWAP_TIMEOUT,
    VERIFY_TIMEOUT,
    assert_clean,
    create_first_admin,
    expect_setup_count,
    field,
    fill_live,
    open_new_mailbox,
    refresh_until_visible,
    set_window_marker,
    swapped,
    window_marker,
)
from tests.servers.oauth import _QuietHandler

# The browser accepts the test CA's certificate of oauth_https (its store lacks the CA).
pytestmark = pytest.mark.browser_context_args(ignore_https_errors=True)

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: oauth %d\r\n\r\nbody %d\r\n"
NOT_AUTHORIZED = "This mailbox is not authorized yet."
DENIED = (
    "Access was refused on the provider's consent page. Click “Get Authorization Code” "
    "again and choose Allow."
)
AUTHORIZED_FLASH = "Authorized. Checking the mailbox with the new token…"


# --- fixtures and helpers ------------------------------------------------------------------


class HttpsFront:
    """The same authorization server (same app, same clients, codes and tokens) over HTTPS."""

    def __init__(self, app, cert_pem, key_pem) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_pem), str(key_pem))
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler, ssl_context=context
        )
        self.base_url = f"https://127.0.0.1:{self._server.server_port}"
        self.authorize_url = self.base_url + "/authorize"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oauth-https-front", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def oauth_https(oauth_server, test_ca):
    front = HttpsFront(oauth_server.app, test_ca.cert_pem, test_ca.key_pem)
    yield front
    front.stop()


@pytest.fixture
def live_client(oauth_server, live_server):
    """A confidential client whose one redirect URI is the live app's callback."""
    oauth_server.reset()  # no records left over from earlier tests
    client = oauth_server.register_client(
        redirect_uris=[live_server + "/oauth/callback"], scope="mail"
    )
    yield client
    oauth_server.reset()  # knobs (deny_next) and records back to the defaults


class Navigations:
    """Every document request of a page's main frame, redirects included: where it went."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self._page = page
        page.on("request", self._request)

    def _request(self, request) -> None:
        if request.is_navigation_request() and request.frame == self._page.main_frame:
            self.urls.append(request.url)

    def to(self, prefix: str) -> list[str]:
        return [u for u in self.urls if u.startswith(prefix)]


def oauth_values(user, dovecot, auth_url: str, token_url: str, client) -> dict:
    """name → (label, value) of the form, in the order a person fills them in."""
    return {
        "name": ("Name", "OAuth desk"),
        "email_address": ("Email Address", user.email),
        "host": ("Host", "127.0.0.1"),
        "port": ("Port", str(dovecot.imaps_port)),
        "client_id": ("Client ID", client.client_id),
        "client_secret": ("Client Secret", client.client_secret),
        "scope": ("Scope", "mail"),
        "auth_url": ("Auth URL", auth_url),
        "token_url": ("Access Token URL", token_url),
    }


def fill_oauth_mailbox(page: Page, javascript: bool, live_server: str, values: dict) -> None:
    """On New mailbox: choose OAuth, check the Redirect URI, fill everything in."""
    oauth_fields = page.locator("#auth-oauth")
    if javascript:
        expect(oauth_fields).to_be_hidden()
        swapped(
            page, "#connection", lambda: field(page, "Authentication Type").select_option("oauth")
        )
        expect(page.locator("#auth-basic")).to_be_hidden()
    else:  # without JavaScript both fieldsets are always shown
        field(page, "Authentication Type").select_option("oauth")
    expect(oauth_fields).to_be_visible()
    expect(field(page, "Client ID")).to_be_visible()
    # Built from EXTERNAL_URL (the live base URL): exactly what was registered at the provider
    expect(field(page, "Redirect URI")).to_have_value(live_server + "/oauth/callback")
    expect(field(page, "Redirect URI")).to_have_attribute("readonly", "")
    for name, (label, value) in values.items():
        if javascript:
            fill_live(page, name, label, value)
        else:
            field(page, label).fill(value)
    if javascript:
        expect(page.locator("#mailbox-form .field .error")).to_have_count(0)


def save_and_see_not_authorized(page: Page, javascript: bool) -> int:
    """Save: Mailbox Setup, where the check says the mailbox is not authorized yet."""
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/mailboxes/\d+/setup$"))
    expect(page.get_by_role("heading", name="Mailbox Setup")).to_be_visible()
    box_id = int(re.search(r"/mailboxes/(\d+)/setup$", page.url).group(1))
    status = page.locator("#oauth-status")
    expect(status).to_contain_text("Not authorized yet")
    expect(status.locator("dl.facts")).to_have_count(0)
    # the expected next step, not an error
    result = page.locator("#setup-progress .result.next")
    if javascript:
        expect(result).to_contain_text(NOT_AUTHORIZED, timeout=VERIFY_TIMEOUT)
    else:
        refresh_until_visible(page, result)
        expect(result).to_contain_text(NOT_AUTHORIZED)
    expect(result).to_contain_text("Get Authorization Code")  # the advice names the button
    expect(page.get_by_role("button", name="Get Authorization Code")).to_be_visible()
    expect(page.get_by_role("button", name="Continue")).to_have_count(0)
    return box_id


def check_provider_request(oauth_server, live_server: str, user, client) -> None:
    sent = oauth_server.last_authorize_params
    assert sent is not None, "the browser never reached the provider's /authorize"
    assert sent["client_id"] == client.client_id
    assert sent["redirect_uri"] == live_server + "/oauth/callback"
    assert sent["response_type"] == "code"
    assert sent["scope"] == "mail"
    assert sent["login_hint"] == user.email
    assert sent["code_challenge_method"] == "S256"
    assert sent["code_challenge"]
    assert sent["state"]
    assert "code_verifier" not in sent
    assert "client_secret" not in sent


def run_full_flow(
    page: Page,
    javascript: bool,
    auth_url: str,
    live_server,
    live_stack,
    oauth_server,
    oauth_dovecot,
    user,
    client,
    tmp_path,
) -> None:
    for i in range(2):
        user.deliver(MESSAGE % (i, i))
    create_first_admin(page, live_server)
    expect(page.locator("html")).to_have_class("js" if javascript else "no-js")
    open_new_mailbox(page)
    fill_oauth_mailbox(
        page,
        javascript,
        live_server,
        oauth_values(user, oauth_dovecot, auth_url, oauth_server.token_url, client),
    )
    page.screenshot(path=str(tmp_path / "oauth-form.png"), full_page=True)
    box_id = save_and_see_not_authorized(page, javascript)
    setup_url = f"{live_server}/mailboxes/{box_id}/setup"

    # Hold the worker so that the check after the callback is seen waiting, then polled in
    live_stack.stop_worker()
    navigations = Navigations(page)
    page.get_by_role("button", name="Get Authorization Code").click()
    # First, as without JavaScript the waiting page reloads itself (meta refresh) and the
    # flash is shown once
    expect(page.locator("p.flash.ok")).to_have_text(AUTHORIZED_FLASH, timeout=SWAP_TIMEOUT)
    expect(page).to_have_url(setup_url)
    expect(page.get_by_role("heading", name="Mailbox Setup")).to_be_visible()

    # The browser went: our /authorize → the provider → our callback (code + state) → Setup
    assert navigations.to(f"{live_server}/mailboxes/{box_id}/authorize"), navigations.urls
    assert navigations.to(auth_url + "?"), navigations.urls
    callbacks = navigations.to(live_server + "/oauth/callback?")
    assert len(callbacks) == 1, navigations.urls
    query = parse_qs(urlsplit(callbacks[0]).query)
    code = query["code"][0]
    assert query["state"][0] == oauth_server.last_authorize_params["state"]
    check_provider_request(oauth_server, live_server, user, client)
    assert oauth_server.token_requests == ["authorization_code"]
    # The code is gone from the address bar (and so from history and bookmarks)
    assert page.url == setup_url
    assert code not in page.url
    assert "code=" not in page.url
    assert "state=" not in page.url

    status = page.locator("#oauth-status")
    expect(status.locator("dl.facts dt").first).to_have_text("Authorized account")
    expect(status.locator("dl.facts dd").first).to_have_text(user.email)
    expect(page.get_by_role("button", name="Re-authorize")).to_be_visible()
    expect(page.get_by_role("button", name="Get Authorization Code")).to_have_count(0)
    progress = page.locator("#setup-progress")
    expect(progress).to_contain_text("Waiting for a worker to pick up the check")
    if javascript:
        set_window_marker(page, "setup")

    live_stack.start_worker()
    count = progress.locator(".count")
    if javascript:
        expect(count).to_have_text("2 messages in this mailbox", timeout=VERIFY_TIMEOUT)
        assert window_marker(page) == "setup", "the result came by a reload, not HTMX polling"
    else:
        refresh_until_visible(page, count)
        expect(count).to_have_text("2 messages in this mailbox")
    expect(progress).to_contain_text("(INBOX)")
    expect(status.locator("dl.facts dd").first).to_have_text(user.email)
    # Dovecot accepted an XOAUTH2 login with the token the app got for this code
    tokens = oauth_server.tokens_for(user.email)
    assert len(tokens) == 1, tokens
    assert (tokens[0].access_token, True) in oauth_server.introspections
    assert oauth_server.refresh_count == 0
    html = page.content()
    for secret in (tokens[0].access_token, tokens[0].refresh_token, code, client.client_secret):
        assert secret not in html
    page.screenshot(path=str(tmp_path / "oauth-setup-result.png"), full_page=True)

    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(f"{live_server}/mailboxes/{box_id}")
    expect(page.locator("p.flash.ok")).to_contain_text("OAuth desk is on")
    expect(page.locator("h1 .badge")).to_have_text("active")
    facts = page.locator("dl.facts").first
    expect(facts).to_contain_text("OAuth")
    expect(facts).to_contain_text("2 messages")
    expect(page.locator("#oauth-status dl.facts")).to_contain_text(user.email)
    page.get_by_role("link", name="Mailboxes").first.click()
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    expect(page.locator("table.list tbody tr .badge")).to_have_text("active")
    # Only the callback itself ever carried the code
    assert [u for u in navigations.urls if code in u] == callbacks, navigations.urls


# --- the whole flow ------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("provider", ["http-loopback", "https"])
def test_oauth_flow_with_javascript(
    provider,
    request,
    page,
    live_server,
    live_stack,
    oauth_server,
    oauth_dovecot,
    oauth_mail_user,
    live_client,
    page_problems,
    tmp_path,
):
    auth_url = (
        oauth_server.authorize_url
        if provider == "http-loopback"
        else request.getfixturevalue("oauth_https").authorize_url
    )
    page_problems.watch(page)
    run_full_flow(
        page,
        True,
        auth_url,
        live_server,
        live_stack,
        oauth_server,
        oauth_dovecot,
        oauth_mail_user,
        live_client,
        tmp_path,
    )
    assert_clean(page_problems)


@pytest.mark.browser
def test_oauth_flow_without_javascript(
    nojs_page,
    live_server,
    live_stack,
    oauth_server,
    oauth_dovecot,
    oauth_mail_user,
    live_client,
    page_problems,
    tmp_path,
):
    page_problems.watch(nojs_page)
    run_full_flow(
        nojs_page,
        False,
        oauth_server.authorize_url,
        live_server,
        live_stack,
        oauth_server,
        oauth_dovecot,
        oauth_mail_user,
        live_client,
        tmp_path,
    )
    assert_clean(page_problems)


# --- the provider refuses ------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
def test_access_denied_at_the_provider_comes_back_as_a_message(
    javascript,
    request,
    live_server,
    oauth_server,
    oauth_dovecot,
    oauth_mail_user,
    live_client,
    page_problems,
    tmp_path,
):
    page = request.getfixturevalue("page" if javascript else "nojs_page")
    page_problems.watch(page)
    create_first_admin(page, live_server)
    open_new_mailbox(page)
    fill_oauth_mailbox(
        page,
        javascript,
        live_server,
        oauth_values(
            oauth_mail_user,
            oauth_dovecot,
            oauth_server.authorize_url,
            oauth_server.token_url,
            live_client,
        ),
    )
    box_id = save_and_see_not_authorized(page, javascript)

    oauth_server.deny_next("access_denied")
    navigations = Navigations(page)
    page.get_by_role("button", name="Get Authorization Code").click()
    expect(page).to_have_url(f"{live_server}/mailboxes/{box_id}", timeout=SWAP_TIMEOUT)

    assert navigations.to(oauth_server.authorize_url + "?"), navigations.urls
    callbacks = navigations.to(live_server + "/oauth/callback?")
    assert len(callbacks) == 1, navigations.urls
    query = parse_qs(urlsplit(callbacks[0]).query)
    assert query["error"] == ["access_denied"]
    assert "code" not in query

    flash = page.locator("p.flash.error")
    expect(flash).to_have_text(DENIED)
    # Nothing was exchanged or saved: still "not authorized", the same button offered again
    assert oauth_server.token_requests == []
    assert oauth_server.tokens_for(oauth_mail_user.email) == []
    status = page.locator("#oauth-status")
    expect(status).to_contain_text("Not authorized yet")
    expect(status.locator("dl.facts")).to_have_count(0)
    expect(page.get_by_role("button", name="Get Authorization Code")).to_be_visible()
    expect(page.get_by_role("button", name="Re-authorize")).to_have_count(0)
    expect(page.locator("h1 .badge")).to_have_text("error")
    page.screenshot(
        path=str(tmp_path / f"oauth-denied-{request.node.callspec.id}.png"), full_page=True
    )

    # The message says to try again and choose Allow: that works
    page.get_by_role("button", name="Get Authorization Code").click()
    expect(page.locator("p.flash.ok")).to_have_text(AUTHORIZED_FLASH, timeout=SWAP_TIMEOUT)
    expect(page).to_have_url(f"{live_server}/mailboxes/{box_id}/setup")
    expect(page.locator("#oauth-status dl.facts dd").first).to_have_text(oauth_mail_user.email)
    expect_setup_count(page, javascript, "0 messages in this mailbox")

    assert_clean(page_problems)
