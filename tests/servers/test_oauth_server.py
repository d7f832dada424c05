"""The test OAuth 2.0 server end to end, without the app: code + PKCE, tokens, XOAUTH2 logins."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from tests.servers.dovecot import DovecotServer, MailUser
from tests.servers.oauth import Client, OAuthTestServer, decode_jwt
from tests.servers.tls import TestCA
from webapp.mail.connect import ServerSettings, count_messages
from webapp.mail.errors import AuthFailed

MESSAGE = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nBody\r\n"


def session_for(client: Client, **extra: object) -> OAuth2Session:
    return OAuth2Session(
        client.client_id,
        client.client_secret,
        scope=client.scope,
        redirect_uri=client.redirect_uri,
        code_challenge_method="S256",
        **extra,
    )


def authorize(
    server: OAuthTestServer, client: Client, verifier: str, **params: str
) -> tuple[str, str]:
    """Run /authorize like a browser; return (callback URL, state)."""
    session = session_for(client)
    url, state = session.create_authorization_url(
        server.authorize_url, code_verifier=verifier, **params
    )
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    return response.headers["Location"], state


def get_tokens(server: OAuthTestServer, client: Client, **session_extra: object) -> dict:
    verifier = generate_token(48)
    callback, state = authorize(server, client, verifier)
    session = session_for(client, state=state, **session_extra)
    return dict(
        session.fetch_token(
            server.token_url, authorization_response=callback, code_verifier=verifier
        )
    )


def mail_settings(
    dovecot: DovecotServer, user: MailUser, protocol: str, token: str, test_ca: TestCA
) -> ServerSettings:
    port = {"imaps": dovecot.imaps_port, "pop3s": dovecot.pop3s_port}[protocol]
    return ServerSettings(
        protocol=protocol,
        host="127.0.0.1",
        port=port,
        username=user.email,
        access_token=token,
        ca_bundle=str(test_ca.ca_pem),
        timeout=5.0,
    )


def token_post(server: OAuthTestServer, client: Client, **data: str) -> requests.Response:
    form = {"client_id": client.client_id, "client_secret": client.client_secret or "", **data}
    return requests.post(server.token_url, data=form, timeout=5)


def test_code_pkce_flow_and_xoauth2_logins(
    oauth_server, oauth_client, oauth_dovecot, oauth_mail_user, test_ca
):
    oauth_mail_user.deliver(MESSAGE)
    oauth_mail_user.deliver(MESSAGE)
    verifier = generate_token(48)
    callback, state = authorize(
        oauth_server,
        oauth_client,
        verifier,
        login_hint=oauth_mail_user.email,
        access_type="offline",
        prompt="consent",
    )
    query = parse_qs(urlsplit(callback).query)
    assert callback.startswith(oauth_client.redirect_uri + "?")
    assert query["state"] == [state]
    assert query["code"]
    params = oauth_server.last_authorize_params
    assert params["state"] == state
    assert params["code_challenge_method"] == "S256"
    assert params["code_challenge"]
    assert params["login_hint"] == oauth_mail_user.email
    assert params["access_type"] == "offline"
    assert params["prompt"] == "consent"

    session = session_for(oauth_client, state=state)
    token = session.fetch_token(
        oauth_server.token_url, authorization_response=callback, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["refresh_token"]
    assert token["scope"] == "mail"
    claims = decode_jwt(token["id_token"], oauth_client.client_secret)
    assert claims["email"] == oauth_mail_user.email
    assert claims["aud"] == oauth_client.client_id
    info = requests.get(
        oauth_server.userinfo_url,
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    )
    assert info.json()["email"] == oauth_mail_user.email
    assert oauth_server.token_requests == ["authorization_code"]
    assert oauth_server.token_auth_methods == ["client_secret_basic"]

    for protocol in ("imaps", "pop3s"):
        settings = mail_settings(
            oauth_dovecot, oauth_mail_user, protocol, token["access_token"], test_ca
        )
        assert count_messages(settings).count == 2
        with pytest.raises(AuthFailed):
            count_messages(
                mail_settings(oauth_dovecot, oauth_mail_user, protocol, "not-a-token", test_ca)
            )
    # Another user's valid token does not open this mailbox (username must match).
    with pytest.raises(AuthFailed):
        count_messages(
            ServerSettings(
                protocol="imaps",
                host="127.0.0.1",
                port=oauth_dovecot.imaps_port,
                username="someone-else@example.com",
                access_token=token["access_token"],
                ca_bundle=str(test_ca.ca_pem),
                timeout=5.0,
            )
        )
    # Password logins still work on the OAuth-enabled Dovecot.
    plain = ServerSettings(
        protocol="imaps",
        host="127.0.0.1",
        port=oauth_dovecot.imaps_port,
        username=oauth_mail_user.email,
        password=oauth_mail_user.password,
        ca_bundle=str(test_ca.ca_pem),
        timeout=5.0,
    )
    assert count_messages(plain).count == 2


def test_client_secret_post_and_code_single_use(oauth_server, oauth_client):
    verifier = generate_token(48)
    callback, state = authorize(oauth_server, oauth_client, verifier)
    session = session_for(
        oauth_client, state=state, token_endpoint_auth_method="client_secret_post"
    )
    token = session.fetch_token(
        oauth_server.token_url, authorization_response=callback, code_verifier=verifier
    )
    assert token["access_token"]
    assert oauth_server.token_auth_methods == ["client_secret_post"]
    code = parse_qs(urlsplit(callback).query)["code"][0]
    again = token_post(
        oauth_server,
        oauth_client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=oauth_client.redirect_uri,
        code_verifier=verifier,
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_old_refresh_token_is_invalid_grant(
    oauth_server, oauth_client, oauth_dovecot, oauth_mail_user, test_ca
):
    first = get_tokens(oauth_server, oauth_client)
    session = session_for(oauth_client)
    second = dict(
        session.refresh_token(oauth_server.token_url, refresh_token=first["refresh_token"])
    )
    assert second["refresh_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert decode_jwt(second["id_token"])["email"] == oauth_mail_user.email
    assert (
        count_messages(
            mail_settings(oauth_dovecot, oauth_mail_user, "imaps", second["access_token"], test_ca)
        ).count
        == 0
    )

    old = token_post(
        oauth_server, oauth_client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert old.status_code == 400
    assert old.json()["error"] == "invalid_grant"
    with pytest.raises(OAuthError) as exc_info:
        session.refresh_token(oauth_server.token_url, refresh_token=first["refresh_token"])
    assert exc_info.value.error == "invalid_grant"
    third = token_post(
        oauth_server,
        oauth_client,
        grant_type="refresh_token",
        refresh_token=second["refresh_token"],
    )
    assert third.status_code == 200, third.text
    assert oauth_server.token_requests == [
        "authorization_code",
        "refresh_token",
        "refresh_token",
        "refresh_token",
        "refresh_token",
    ]
    assert oauth_server.refresh_count == 2
    assert oauth_server.token_errors == [("refresh_token", "invalid_grant")] * 2


def test_concurrent_refreshes_with_one_refresh_token(oauth_server, oauth_client):
    first = get_tokens(oauth_server, oauth_client)
    results: list[int] = []

    def refresh() -> None:
        r = token_post(
            oauth_server,
            oauth_client,
            grant_type="refresh_token",
            refresh_token=first["refresh_token"],
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 400, 400, 400]
    assert oauth_server.refresh_count == 1


def test_without_rotation_the_refresh_token_stays(oauth_server, oauth_client):
    oauth_server.rotate_refresh_tokens = False
    first = get_tokens(oauth_server, oauth_client)
    for _ in range(2):
        r = token_post(
            oauth_server,
            oauth_client,
            grant_type="refresh_token",
            refresh_token=first["refresh_token"],
        )
        assert r.status_code == 200
        assert "refresh_token" not in r.json()


def test_expired_access_token_fails_login_and_introspection(
    oauth_server, oauth_client, oauth_dovecot, oauth_mail_user, test_ca
):
    oauth_server.expires_in = 120
    token = get_tokens(oauth_server, oauth_client)
    assert token["expires_in"] == 120
    settings = mail_settings(
        oauth_dovecot, oauth_mail_user, "imaps", token["access_token"], test_ca
    )
    assert count_messages(settings).count == 0
    oauth_server.expire_access_tokens(oauth_mail_user.email)
    introspected = requests.post(
        oauth_server.introspect_url,
        data={"token": token["access_token"], "client_id": "", "client_secret": ""},
        timeout=5,
    ).json()
    assert introspected == {"active": False}
    with pytest.raises(AuthFailed):
        count_messages(settings)
    with pytest.raises(AuthFailed):
        count_messages(
            mail_settings(oauth_dovecot, oauth_mail_user, "pop3s", token["access_token"], test_ca)
        )
    info = requests.get(
        oauth_server.userinfo_url,
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    )
    assert info.status_code == 401
    # The refresh token still works and its access token logs in.
    fresh = token_post(
        oauth_server, oauth_client, grant_type="refresh_token", refresh_token=token["refresh_token"]
    ).json()
    assert (
        count_messages(
            mail_settings(oauth_dovecot, oauth_mail_user, "pop3s", fresh["access_token"], test_ca)
        ).count
        == 0
    )


def test_consent_revoked(oauth_server, oauth_client, oauth_mail_user):
    token = get_tokens(oauth_server, oauth_client)
    oauth_server.revoke_refresh_tokens(oauth_mail_user.email)
    r = token_post(
        oauth_server, oauth_client, grant_type="refresh_token", refresh_token=token["refresh_token"]
    )
    assert r.json()["error"] == "invalid_grant"
    assert oauth_server.introspect(token["access_token"])["active"] is True
    oauth_server.revoke_all_for(oauth_mail_user.email)
    assert oauth_server.introspect(token["access_token"]) == {"active": False}


def test_revocation_endpoint(oauth_server, oauth_client):
    token = get_tokens(oauth_server, oauth_client)
    r = requests.post(
        oauth_server.revoke_url,
        data={"token": token["refresh_token"]},
        auth=(oauth_client.client_id, oauth_client.client_secret),
        timeout=5,
    )
    assert r.status_code == 200
    assert oauth_server.introspect(token["access_token"]) == {"active": False}
    r = token_post(
        oauth_server, oauth_client, grant_type="refresh_token", refresh_token=token["refresh_token"]
    )
    assert r.json()["error"] == "invalid_grant"
    # Google style: token only, no client authentication.
    other = get_tokens(oauth_server, oauth_client)
    assert (
        requests.post(
            oauth_server.revoke_url, data={"token": other["access_token"]}, timeout=5
        ).status_code
        == 200
    )
    assert oauth_server.introspect(other["access_token"]) == {"active": False}
    assert oauth_server.revocations == [token["refresh_token"], other["access_token"]]


def test_denied_authorization_redirects_with_error(oauth_server, oauth_client):
    oauth_server.deny_next()
    verifier = generate_token(48)
    callback, state = authorize(oauth_server, oauth_client, verifier)
    query = parse_qs(urlsplit(callback).query)
    assert callback.startswith(oauth_client.redirect_uri)
    assert query == {"error": ["access_denied"], "state": [state]}
    # Only the next one: the one after gets a code.
    callback, state = authorize(oauth_server, oauth_client, verifier)
    assert "code" in parse_qs(urlsplit(callback).query)


def test_wrong_code_verifier_is_invalid_grant(oauth_server, oauth_client):
    verifier = generate_token(48)
    callback, state = authorize(oauth_server, oauth_client, verifier)
    session = session_for(oauth_client, state=state)
    with pytest.raises(OAuthError) as exc_info:
        session.fetch_token(
            oauth_server.token_url,
            authorization_response=callback,
            code_verifier=generate_token(48),
        )
    assert exc_info.value.error == "invalid_grant"
    assert oauth_server.token_errors == [("authorization_code", "invalid_grant")]


def test_pkce_is_required(oauth_server, oauth_client):
    plain = OAuth2Session(
        oauth_client.client_id,
        oauth_client.client_secret,
        scope="mail",
        redirect_uri=oauth_client.redirect_uri,
    )
    url, state = plain.create_authorization_url(oauth_server.authorize_url)
    response = requests.get(url, allow_redirects=False, timeout=5)
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == [state]


def test_unknown_redirect_uri_is_not_followed(oauth_server, oauth_client):
    session = OAuth2Session(
        oauth_client.client_id,
        oauth_client.client_secret,
        scope="mail",
        redirect_uri="http://evil.example/cb",
        code_challenge_method="S256",
    )
    url, _ = session.create_authorization_url(
        oauth_server.authorize_url, code_verifier=generate_token(48)
    )
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_wrong_client_secret_is_invalid_client(oauth_server, oauth_client):
    token = get_tokens(oauth_server, oauth_client)
    r = requests.post(
        oauth_server.token_url,
        timeout=5,
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": "wrong",
        },
    )
    assert r.json()["error"] == "invalid_client"


def test_fail_next_token_request(oauth_server, oauth_client):
    token = get_tokens(oauth_server, oauth_client)
    oauth_server.fail_next_token_request()
    r = token_post(
        oauth_server, oauth_client, grant_type="refresh_token", refresh_token=token["refresh_token"]
    )
    assert r.status_code == 503
    assert r.json() == {"error": "temporarily_unavailable"}
    r = token_post(
        oauth_server, oauth_client, grant_type="refresh_token", refresh_token=token["refresh_token"]
    )
    assert r.status_code == 200
