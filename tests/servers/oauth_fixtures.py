"""Pytest plugin: an OAuth 2.0 authorization server and a Dovecot that trusts its tokens.

Needs the `test_ca` fixture of tests.servers.fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.dovecot import DovecotServer, MailUser
from tests.servers.oauth import DEFAULT_USER, Client, OAuthTestServer
from tests.servers.tls import TestCA

# The EXTERNAL_URL of the app tests plus the app's callback path.
OAUTH_REDIRECT_URI = "http://127.0.0.1:5000/oauth/callback"
OAUTH_SCOPE = "mail"


@pytest.fixture(scope="session")
def oauth_server() -> Iterator[OAuthTestServer]:
    """One Authlib authorization server on 127.0.0.1 for the session."""
    server = OAuthTestServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oauth_dovecot(test_ca: TestCA, oauth_server: OAuthTestServer) -> Iterator[DovecotServer]:
    """A second Dovecot whose XOAUTH2/OAUTHBEARER logins ask oauth_server's /introspect.

    Password logins keep working; TLS uses the test CA's certificate.
    """
    server = DovecotServer(
        cert_pem=test_ca.cert_pem,
        key_pem=test_ca.key_pem,
        oauth2_introspection_url=oauth_server.introspect_url,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def oauth_mail_user(
    oauth_dovecot: DovecotServer, oauth_server: OAuthTestServer
) -> Iterator[MailUser]:
    """A fresh user on oauth_dovecot; oauth_server consents as this user's address."""
    user = oauth_dovecot.new_user("oauth")
    oauth_server.login_as(user.email)
    yield user
    oauth_server.login_as(DEFAULT_USER)


@pytest.fixture
def oauth_client(oauth_server: OAuthTestServer) -> Iterator[Client]:
    """A freshly registered confidential client: .client_id, .client_secret,
    .redirect_uri (OAUTH_REDIRECT_URI), .redirect_uris, .scope ("mail").

    After the test the server's knobs and records go back to the defaults
    (expires_in, rotate_refresh_tokens, require_pkce, deny_next, counters).
    """
    client = oauth_server.register_client(redirect_uris=[OAUTH_REDIRECT_URI], scope=OAUTH_SCOPE)
    yield client
    oauth_server.reset()
