"""The connection layer against a real Dovecot (the test servers themselves: tests/servers/)."""

from __future__ import annotations

import json
import pickle
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from tests.servers.dovecot import DovecotServer, MailUser
from tests.servers.tls import TestCA, TlsGreetingServer
from webapp.mail.connect import ServerSettings, count_messages, open_imap, open_pop3
from webapp.mail.errors import (
    AuthFailed,
    ConnectionRefused,
    ConnectionTimedOut,
    FolderNotFound,
    HostNotFound,
    MailError,
    MechanismNotOffered,
    PlaintextRefused,
    ProtocolError,
    TlsFailed,
)

MESSAGE = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hello\r\n\r\nBody\r\n"
# Words of Dovecot's answers and banner; none may reach an error text.
SERVER_WORDS = ("Authentication failed", "AUTHENTICATIONFAILED", "Dovecot", "ready", "+OK", "-ERR")


def settings_for(
    server: DovecotServer, user: MailUser, protocol: str, test_ca: TestCA | None, **extra: object
) -> ServerSettings:
    port = {
        "imaps": server.imaps_port,
        "imap": server.imap_port,
        "pop3s": server.pop3s_port,
        "pop3": server.pop3_port,
    }[protocol]
    values: dict[str, object] = {
        "protocol": protocol,
        "host": server.host,
        "port": port,
        "username": user.email,
        "password": user.password,
        "ca_bundle": str(test_ca.ca_pem) if test_ca else None,
        "timeout": 5.0,
    }
    values.update(extra)
    return ServerSettings(**values)  # type: ignore[arg-type]


def assert_clean_text(error: MailError, *secrets: str) -> None:
    text = f"{error} {error.message} {error.advice} {error.kind}"
    for word in (*secrets, *SERVER_WORDS):
        assert word not in text, f"{word!r} leaked into {text!r}"
    assert error.message
    assert error.advice


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


# -- counting over every protocol ------------------------------------------


@pytest.mark.parametrize("protocol", ["imaps", "pop3s", "imap", "pop3"])
def test_counts_delivered_messages_over_tls(dovecot, mail_user, test_ca, protocol):
    for _ in range(3):
        mail_user.deliver(MESSAGE)
    result = count_messages(settings_for(dovecot, mail_user, protocol, test_ca))
    assert result.count == 3
    assert result.plaintext is False  # imap/pop3 upgraded with STARTTLS/STLS


def test_empty_mailbox_counts_zero_and_localhost_name_verifies(dovecot, mail_user, test_ca):
    s = settings_for(dovecot, mail_user, "imaps", test_ca, host="localhost")
    assert count_messages(s).count == 0


def test_open_imap_returns_logged_in_client(dovecot, mail_user, test_ca):
    mail_user.deliver(MESSAGE)
    client, plaintext = open_imap(settings_for(dovecot, mail_user, "imap", test_ca))
    try:
        assert plaintext is False
        assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 1
    finally:
        client.logout()


def test_open_pop3_returns_logged_in_session(dovecot, mail_user, test_ca):
    mail_user.deliver(MESSAGE)
    pop, plaintext = open_pop3(settings_for(dovecot, mail_user, "pop3s", test_ca))
    try:
        assert plaintext is False
        assert len(pop.uidl()[1]) == 1
    finally:
        pop.quit()


def test_counts_another_folder(dovecot, mail_user, test_ca):
    mail_user.deliver(MESSAGE, folder="Support")
    mail_user.deliver(MESSAGE, folder="Support")
    mail_user.deliver(MESSAGE)
    s = settings_for(dovecot, mail_user, "imaps", test_ca, folder="Support")
    assert count_messages(s).count == 2


def test_missing_folder(dovecot, mail_user, test_ca):
    s = settings_for(dovecot, mail_user, "imaps", test_ca, folder="Nope")
    with pytest.raises(FolderNotFound) as info:
        count_messages(s)
    assert "Nope" in info.value.message


# -- classified failures ---------------------------------------------------


@pytest.mark.parametrize("protocol", ["imaps", "pop3s", "imap", "pop3"])
def test_wrong_password(dovecot, mail_user, test_ca, protocol):
    wrong = "Wrong-Pa55word-xyz"
    s = settings_for(dovecot, mail_user, protocol, test_ca, password=wrong)
    with pytest.raises(AuthFailed) as info:
        count_messages(s)
    assert info.value.kind == "auth"
    assert_clean_text(info.value, wrong, mail_user.password)


def test_closed_port():
    s = ServerSettings("imaps", "127.0.0.1", closed_port(), "u", password="p", timeout=5)
    with pytest.raises(ConnectionRefused) as info:
        count_messages(s)
    assert info.value.kind == "connection_refused"
    assert str(s.port) in info.value.message


def test_unknown_host():
    s = ServerSettings("imaps", "no-such-host.invalid", 993, "u", password="p", timeout=5)
    with pytest.raises(HostNotFound) as info:
        count_messages(s)
    assert "no-such-host.invalid" in info.value.message
    assert "imap.gmail.com" in info.value.advice


def test_invalid_host_name():
    s = ServerSettings("pop3s", "imap..example.com", 995, "u", password="p", timeout=5)
    with pytest.raises(HostNotFound):
        count_messages(s)


@pytest.mark.parametrize("protocol", ["imaps", "pop3s", "imap"])
def test_untrusted_certificate_without_test_ca(dovecot, mail_user, protocol):
    s = settings_for(dovecot, mail_user, protocol, None)
    with pytest.raises(TlsFailed) as info:
        count_messages(s)
    assert info.value.kind == "tls_untrusted"
    assert "MAIL_CA_BUNDLE" in info.value.advice


def test_self_signed_certificate(test_ca):
    with TlsGreetingServer(test_ca.untrusted_cert_pem, test_ca.untrusted_key_pem) as server:
        s = ServerSettings(
            "imaps",
            "127.0.0.1",
            server.port,
            "u",
            password="p",
            ca_bundle=str(test_ca.ca_pem),
            timeout=5,
        )
        with pytest.raises(TlsFailed) as info:
            count_messages(s)
    assert info.value.kind == "tls_untrusted"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_hostname_mismatch(test_ca, host):
    with TlsGreetingServer(test_ca.wrong_host_cert_pem, test_ca.wrong_host_key_pem) as server:
        s = ServerSettings(
            "imaps", host, server.port, "u", password="p", ca_bundle=str(test_ca.ca_pem), timeout=5
        )
        with pytest.raises(TlsFailed) as info:
            count_messages(s)
    assert info.value.kind == "tls_hostname"
    assert host in info.value.message


def test_tls_protocol_on_plain_port(dovecot, mail_user, test_ca):
    s = settings_for(dovecot, mail_user, "imaps", test_ca, port=dovecot.imap_port)
    with pytest.raises(TlsFailed) as info:
        count_messages(s)
    assert info.value.kind == "tls"
    assert f"did not answer with TLS on port {dovecot.imap_port}" in info.value.message
    assert "993 is IMAPS" in info.value.message
    assert_clean_text(info.value)


def test_pop3_at_the_imap_port(dovecot, mail_user, test_ca):
    s = settings_for(dovecot, mail_user, "pop3s", test_ca, port=dovecot.imaps_port)
    with pytest.raises(ProtocolError) as info:
        count_messages(s)
    assert "POP3" in info.value.message
    assert_clean_text(info.value)


def test_imap_at_the_pop3_port(dovecot, mail_user, test_ca):
    s = settings_for(dovecot, mail_user, "imaps", test_ca, port=dovecot.pop3s_port)
    with pytest.raises(ProtocolError) as info:
        count_messages(s)
    assert "IMAP" in info.value.message
    assert_clean_text(info.value)


def test_plain_protocol_on_tls_port_times_out(dovecot, mail_user, test_ca):
    s = settings_for(dovecot, mail_user, "imap", test_ca, port=dovecot.imaps_port, timeout=1)
    with pytest.raises(ConnectionTimedOut) as info:
        count_messages(s)
    assert "993" in info.value.advice


def test_silent_server_times_out():
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts (backlog), never speaks
        s = ServerSettings(
            "pop3", "127.0.0.1", listener.getsockname()[1], "u", password="p", timeout=0.5
        )
        with pytest.raises(ConnectionTimedOut):
            count_messages(s)


def test_missing_ca_bundle_file(dovecot, mail_user, tmp_path):
    s = settings_for(dovecot, mail_user, "imaps", None, ca_bundle=str(tmp_path / "nope.pem"))
    with pytest.raises(TlsFailed):
        count_messages(s)


def test_no_credentials(dovecot, mail_user, test_ca):
    s = settings_for(dovecot, mail_user, "imaps", test_ca, password=None)
    with pytest.raises(AuthFailed):
        count_messages(s)


def test_settings_repr_hides_secrets():
    s = ServerSettings("imaps", "h", 993, "u", password="hunter2", access_token="tok-123")
    assert "hunter2" not in repr(s)
    assert "tok-123" not in repr(s)
    with pytest.raises(ValueError):
        ServerSettings("smtp", "h", 25, "u")


def test_errors_pickle_with_their_fields():
    error = TlsFailed("m", "a", kind="tls_hostname")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TlsFailed
    assert copy.message == "m"
    assert copy.advice == "a"
    assert copy.kind == "tls_hostname"
    assert str(copy) == "m"


# -- plain text (no TLS on the server) -------------------------------------


@pytest.fixture(scope="module")
def plain_dovecot() -> Iterator[DovecotServer]:
    with DovecotServer() as server:
        yield server


@pytest.fixture(scope="module")
def strict_plain_dovecot() -> Iterator[DovecotServer]:
    # Dovecot trusts connections whose local and remote IP are equal (127.0.0.1
    # to 127.0.0.1) as secure; on 127.0.0.2 the client comes from 127.0.0.1.
    with DovecotServer(host="127.0.0.2", disable_plaintext_auth=True) as server:
        yield server


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_plaintext_fallback_is_flagged(plain_dovecot, protocol):
    user = plain_dovecot.new_user()
    user.deliver(MESSAGE)
    s = settings_for(plain_dovecot, user, protocol, None, allow_plaintext_login=True)
    result = count_messages(s)
    assert result.count == 1
    assert result.plaintext is True


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_plaintext_login_refused(strict_plain_dovecot, protocol):
    user = strict_plain_dovecot.new_user()
    s = settings_for(strict_plain_dovecot, user, protocol, None, allow_plaintext_login=True)
    with pytest.raises(PlaintextRefused) as info:
        count_messages(s)
    assert_clean_text(info.value, user.password)


# -- XOAUTH2 against Dovecot's oauth2 passdb -------------------------------


class Introspection(ThreadingHTTPServer):
    """A token introspection endpoint (RFC 7662 style) that Dovecot POSTs tokens to."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}  # token -> username
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _IntrospectionHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/introspect"


class _IntrospectionHandler(BaseHTTPRequestHandler):
    server: Introspection

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        token = parse_qs(body).get("token", [""])[0]
        self.server.seen.append(token)
        username = self.server.tokens.get(token)
        answer = {"active": True, "username": username} if username else {"active": False}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def token_introspection() -> Iterator[Introspection]:
    server = Introspection()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def xoauth2_dovecot(test_ca, token_introspection) -> Iterator[DovecotServer]:
    with DovecotServer(
        cert_pem=test_ca.cert_pem,
        key_pem=test_ca.key_pem,
        oauth2_introspection_url=token_introspection.url,
    ) as server:
        yield server


@pytest.mark.parametrize("protocol", ["imaps", "pop3s", "imap", "pop3"])
def test_xoauth2_good_token(xoauth2_dovecot, token_introspection, test_ca, protocol):
    user = xoauth2_dovecot.new_user()
    user.deliver(MESSAGE)
    token = f"good-token-{user.email}"
    token_introspection.tokens[token] = user.email
    s = settings_for(xoauth2_dovecot, user, protocol, test_ca, password=None, access_token=token)
    assert count_messages(s).count == 1
    assert token in token_introspection.seen


@pytest.mark.parametrize("protocol", ["imaps", "pop3s"])
def test_xoauth2_bad_token(xoauth2_dovecot, token_introspection, test_ca, protocol):
    user = xoauth2_dovecot.new_user()
    s = settings_for(
        xoauth2_dovecot, user, protocol, test_ca, password=None, access_token="expired-token-123"
    )
    with pytest.raises(AuthFailed) as info:
        count_messages(s)
    assert "token" in info.value.message
    assert_clean_text(info.value, "expired-token-123")


@pytest.mark.parametrize("protocol", ["imaps", "pop3s"])
def test_xoauth2_server_still_takes_passwords_but_not_as_tokens(xoauth2_dovecot, test_ca, protocol):
    user = xoauth2_dovecot.new_user()
    assert count_messages(settings_for(xoauth2_dovecot, user, protocol, test_ca)).count == 0
    s = settings_for(
        xoauth2_dovecot, user, protocol, test_ca, password=None, access_token=user.password
    )
    with pytest.raises(AuthFailed):
        count_messages(s)


@pytest.mark.parametrize("protocol", ["imaps", "pop3s"])
def test_xoauth2_not_offered(dovecot, mail_user, test_ca, protocol):
    s = settings_for(dovecot, mail_user, protocol, test_ca, password=None, access_token="t")
    with pytest.raises(MechanismNotOffered) as info:
        count_messages(s)
    assert "XOAUTH2" in info.value.message
