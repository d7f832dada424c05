"""Outgoing mail against real SMTP servers on 127.0.0.1: TLS, AUTH, XOAUTH2, retries, injection."""

from __future__ import annotations

import base64
import json
import pickle
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from tests.helpers.messages import MARKER, parsed
from tests.servers.dovecot import free_ports
from tests.servers.smtp import CapturingSMTPServer
from tests.servers.tls import TestCA
from webapp.mail.compose import build_message
from webapp.mail.errors import (
    AuthFailed,
    ConnectionRefused,
    ConnectionTimedOut,
    MailError,
    MechanismNotOffered,
    TlsFailed,
)
from webapp.mail.send import (
    PermanentFailure,
    SmtpSettings,
    TemporaryFailure,
    send_message,
)

USER, PASSWORD, TOKEN = "desk@example.com", "s3cret-pass", "ya29.token-value"


def message(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "from_addr": "desk@example.com",
        "from_name": "Support",
        "to_addr": "ada@example.org",
        "to_name": "Ada Lovelace",
        "subject": "Re: [#12] Printer jammed",
        "text": "We ordered a new drum.",
        "message_id_domain": "desk.example.com",
    }
    values.update(overrides)
    return build_message(**values)


def settings(port: int, security: str = "none", **extra: Any) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, security=security, timeout=5.0, **extra)


def send(s: SmtpSettings, msg: Any = None, to: list[str] | None = None) -> Any:
    return send_message(s, msg or message(), "desk@example.com", to or ["ada@example.org"])


# -- small servers this file needs besides CapturingSMTPServer ---------------------------


class XOAuthHandler:
    """Accepts AUTH XOAUTH2 for USER/TOKEN only; keeps what it saw and what it received."""

    def __init__(self) -> None:
        self.auth_lines: list[bytes] = []
        self.messages: list[Envelope] = []

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        self.auth_lines.append(blob)
        if blob == f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode():
            return AuthResult(success=True)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
        await server.challenge_auth(error)  # RFC 7628: the client answers with an empty line
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 2.0.0 Ok: queued as XO1"


@pytest.fixture
def xoauth_server(test_ca: TestCA) -> Iterator[tuple[XOAuthHandler, int]]:
    """STARTTLS, then AUTH (XOAUTH2 among PLAIN and LOGIN) before any mail."""
    handler, port = XOAuthHandler(), free_ports(1)[0]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(test_ca.cert_pem), str(test_ca.key_pem))
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=context, auth_required=True
    )
    controller.start()
    yield handler, port
    controller.stop()


def implicit_tls_server(cert: Any, key: Any) -> tuple[Controller, list[Envelope]]:
    """aiosmtpd speaking TLS from the first byte (SMTPS, port 465 style)."""
    received: list[Envelope] = []

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            received.append(envelope)
            return "250 OK"

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=free_ports(1)[0], ssl_context=context
    )
    return controller, received


class ScriptedServer:
    """A raw TCP server answering each line from a script: None hangs up, then it goes silent."""

    def __init__(self, greeting: bytes | None, answers: list[bytes | None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.greeting, self.answers = greeting, answers
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as lines:
            if self.greeting is None:
                conn.recv(1)  # wait for the client to give up
                return
            conn.sendall(self.greeting)
            for answer in self.answers:
                if not lines.readline() or answer is None:
                    return
                conn.sendall(answer)
            while lines.readline():  # out of answers: stay silent until the client leaves
                pass

    def close(self) -> None:
        self.listener.close()


# -- sending ---------------------------------------------------------------------------


def test_plain_send_without_auth_even_with_credentials(smtp_server: CapturingSMTPServer) -> None:
    s = settings(smtp_server.port, username=USER, password=PASSWORD)
    result = send(s)
    [got] = smtp_server.wait_for(1)
    assert got.mail_from == "desk@example.com"
    assert got.rcpt_tos == ["ada@example.org"]
    sent = parsed(got.data)
    assert sent["Message-ID"] == result.message_id
    assert result.message_id.endswith("@desk.example.com>")
    assert result.server_reply == "Message accepted for delivery"


def test_starttls_with_login(test_ca: TestCA) -> None:
    tls = (test_ca.cert_pem, test_ca.key_pem)
    with CapturingSMTPServer(auth=(USER, PASSWORD), tls=tls, require_starttls=True) as server:
        s = settings(server.port, "starttls", username=USER, password=PASSWORD,
                     ca_bundle=str(test_ca.ca_pem))  # fmt: skip
        send(s)
        assert len(server.wait_for(1)) == 1


def test_non_ascii_password_logs_in_with_utf8_plain(test_ca: TestCA) -> None:
    tls = (test_ca.cert_pem, test_ca.key_pem)
    with CapturingSMTPServer(auth=(USER, "pässwörd"), tls=tls) as server:
        s = settings(server.port, "starttls", username=USER, password="pässwörd",
                     ca_bundle=str(test_ca.ca_pem))  # fmt: skip
        send(s)
        assert len(server.wait_for(1)) == 1


def test_starttls_wrong_password_is_auth_failed(test_ca: TestCA) -> None:
    tls = (test_ca.cert_pem, test_ca.key_pem)
    with CapturingSMTPServer(auth=(USER, PASSWORD), tls=tls) as server:
        s = settings(server.port, "starttls", username=USER, password="wrong-password",
                     ca_bundle=str(test_ca.ca_pem))  # fmt: skip
        with pytest.raises(AuthFailed) as info:
            send(s)
        assert info.value.kind == "auth"
        assert "wrong-password" not in info.value.message
        assert server.attempts == 0


def test_server_demanding_login_it_did_not_offer(test_ca: TestCA) -> None:
    tls = (test_ca.cert_pem, test_ca.key_pem)
    with CapturingSMTPServer(auth=(USER, PASSWORD), tls=tls) as server:
        s = settings(server.port, "starttls", ca_bundle=str(test_ca.ca_pem))  # no credentials
        with pytest.raises(AuthFailed) as info:
            send(s)
        assert info.value.kind == "auth_required"


def test_implicit_tls(test_ca: TestCA) -> None:
    controller, received = implicit_tls_server(test_ca.cert_pem, test_ca.key_pem)
    controller.start()
    try:
        send(settings(controller.port, "ssl", ca_bundle=str(test_ca.ca_pem)))
    finally:
        controller.stop()
    assert [e.rcpt_tos for e in received] == [["ada@example.org"]]


def test_implicit_tls_untrusted_certificate(test_ca: TestCA) -> None:
    controller, received = implicit_tls_server(
        test_ca.untrusted_cert_pem, test_ca.untrusted_key_pem
    )
    controller.start()
    try:
        with pytest.raises(TlsFailed) as info:
            send(settings(controller.port, "ssl", ca_bundle=str(test_ca.ca_pem)))
    finally:
        controller.stop()
    assert info.value.kind == "tls_untrusted"
    assert received == []


def test_starttls_untrusted_certificate(test_ca: TestCA) -> None:
    tls = (test_ca.untrusted_cert_pem, test_ca.untrusted_key_pem)
    with CapturingSMTPServer(tls=tls) as server:
        with pytest.raises(TlsFailed) as info:
            send(settings(server.port, "starttls", ca_bundle=str(test_ca.ca_pem)))
        assert info.value.kind == "tls_untrusted"
        assert server.attempts == 0


def test_starttls_wrong_host_certificate(test_ca: TestCA) -> None:
    tls = (test_ca.wrong_host_cert_pem, test_ca.wrong_host_key_pem)
    with CapturingSMTPServer(tls=tls) as server:
        with pytest.raises(TlsFailed) as info:
            send(settings(server.port, "starttls", ca_bundle=str(test_ca.ca_pem)))
        assert info.value.kind == "tls_hostname"


def test_starttls_required_but_not_offered(smtp_server: CapturingSMTPServer) -> None:
    s = settings(smtp_server.port, "starttls", username=USER, password=PASSWORD)
    with pytest.raises(MechanismNotOffered):
        send(s)
    assert smtp_server.attempts == 0


def test_xoauth2_login(xoauth_server: tuple[XOAuthHandler, int], test_ca: TestCA) -> None:
    handler, port = xoauth_server
    s = settings(port, "starttls", username=USER, access_token=TOKEN, password="unused",
                 ca_bundle=str(test_ca.ca_pem))  # fmt: skip
    result = send(s)
    assert handler.auth_lines == [f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode()]
    assert len(handler.messages) == 1
    assert result.server_reply == "2.0.0 Ok: queued as XO1"


def test_xoauth2_rejected_token(xoauth_server: tuple[XOAuthHandler, int], test_ca: TestCA) -> None:
    handler, port = xoauth_server
    s = settings(port, "starttls", username=USER, access_token="expired-token",
                 ca_bundle=str(test_ca.ca_pem))  # fmt: skip
    with pytest.raises(AuthFailed) as info:
        send(s)
    assert len(handler.auth_lines) == 1  # answered the error challenge, did not retry
    assert "expired-token" not in info.value.message
    assert "access token" in info.value.message
    assert handler.messages == []


def test_xoauth2_not_offered(test_ca: TestCA) -> None:
    tls = (test_ca.cert_pem, test_ca.key_pem)
    with CapturingSMTPServer(auth=(USER, PASSWORD), tls=tls) as server:
        s = settings(server.port, "starttls", username=USER, access_token=TOKEN,
                     ca_bundle=str(test_ca.ca_pem))  # fmt: skip
        with pytest.raises(MechanismNotOffered):
            send(s)


def test_temporary_failure_then_success(smtp_server: CapturingSMTPServer) -> None:
    smtp_server.set_responses(["451 4.3.0 Try again later"])
    s = settings(smtp_server.port)
    with pytest.raises(TemporaryFailure) as info:
        send(s)
    error = info.value
    assert error.kind == "smtp_temporary"
    assert error.code == 451
    assert error.server_reply == "4.3.0 Try again later"
    assert "Try again later" not in error.message
    send(s)
    assert smtp_server.attempts == 2
    assert len(smtp_server.messages) == 1
    again = pickle.loads(pickle.dumps(error))  # RQ pickles job exceptions
    assert type(again) is TemporaryFailure
    assert again.code == 451
    assert again.server_reply == error.server_reply


def test_permanent_failure_at_data(smtp_server: CapturingSMTPServer) -> None:
    smtp_server.set_responses(["550 5.7.1 Message rejected as spam"])
    with pytest.raises(PermanentFailure) as info:
        send(settings(smtp_server.port))
    assert info.value.kind == "smtp_permanent"
    assert info.value.code == 550
    assert info.value.server_reply == "5.7.1 Message rejected as spam"


def test_permanent_failure_for_the_only_recipient(smtp_server: CapturingSMTPServer) -> None:
    smtp_server.set_responses(["550 5.1.1 No such user"], stage="RCPT")
    with pytest.raises(PermanentFailure) as info:
        send(settings(smtp_server.port))
    assert info.value.code == 550
    assert smtp_server.attempts == 0


def test_one_refused_recipient_of_two_is_reported(smtp_server: CapturingSMTPServer) -> None:
    smtp_server.set_responses(["550 5.1.1 No such user"], stage="RCPT")
    result = send(settings(smtp_server.port), to=["gone@example.org", "ada@example.org"])
    assert result.refused == {"gone@example.org": (550, "5.1.1 No such user")}
    assert smtp_server.messages[0].rcpt_tos == ["ada@example.org"]


def test_server_reply_is_truncated(smtp_server: CapturingSMTPServer) -> None:
    smtp_server.set_responses(["554 " + "x" * 500])
    with pytest.raises(PermanentFailure) as info:
        send(settings(smtp_server.port))
    assert len(info.value.server_reply) == 300


def test_connection_refused() -> None:
    with pytest.raises(ConnectionRefused):
        send(settings(free_ports(1)[0]))


def test_no_greeting_is_a_connection_timeout() -> None:
    server = ScriptedServer(None, [])
    try:
        with pytest.raises(ConnectionTimedOut):
            send(SmtpSettings("127.0.0.1", server.port, "none", timeout=0.5))
    finally:
        server.close()


@pytest.mark.parametrize("answer", [None, b"421 4.7.0 Too many connections\r\n"])
def test_disconnect_or_421_after_greeting_is_temporary(answer: bytes | None) -> None:
    server = ScriptedServer(b"220 ready\r\n", [b"250 mx.test\r\n", answer])
    try:
        with pytest.raises(TemporaryFailure):
            send(SmtpSettings("127.0.0.1", server.port, "none", timeout=2))
    finally:
        server.close()


@pytest.mark.parametrize(
    ("greeting", "error"),
    [(b"554 5.3.2 No service\r\n", PermanentFailure), (b"421 4.3.2 Busy\r\n", TemporaryFailure)],
)
def test_refused_greeting(greeting: bytes, error: type[MailError]) -> None:
    server = ScriptedServer(greeting, [])
    try:
        with pytest.raises(error) as info:
            send(SmtpSettings("127.0.0.1", server.port, "none", timeout=2))
        assert "the connection" in info.value.message
    finally:
        server.close()


def test_envelope_injection_is_refused(smtp_server: CapturingSMTPServer) -> None:
    with pytest.raises(ValueError):
        send(settings(smtp_server.port), to=["ada@example.org\r\nRCPT TO:<evil@example.net>"])
    with pytest.raises(ValueError):
        send_message(settings(smtp_server.port), message(), "desk@example.com", [])
    assert smtp_server.attempts == 0


def test_silence_after_data_is_temporary() -> None:
    answers: list[bytes | None] = [b"250 mx.test\r\n", b"250 OK\r\n", b"250 OK\r\n", b"354 go\r\n"]
    server = ScriptedServer(b"220 ready\r\n", answers)
    try:
        with pytest.raises(TemporaryFailure) as info:
            send(SmtpSettings("127.0.0.1", server.port, "none", timeout=0.5))
        assert "stopped answering" in info.value.message
    finally:
        server.close()


def test_secrets_stay_out_of_repr_and_messages() -> None:
    s = SmtpSettings("smtp.test", 587, "starttls", USER, PASSWORD, TOKEN)
    assert PASSWORD not in repr(s)
    assert TOKEN not in repr(s)
    with pytest.raises(ValueError):
        SmtpSettings("smtp.test", 587, "tls")


# -- building --------------------------------------------------------------------------


def test_header_injection_gives_one_header_and_one_recipient(
    smtp_server: CapturingSMTPServer,
) -> None:
    msg = message(
        subject="Hi\r\nBcc: evil@example.net",
        to_name="Ada\nBcc: evil@example.net",
        from_name="Support\rCc: evil@example.net",
        extra_headers={"X-Case": "12\r\nBcc: evil@example.net"},
    )
    send(settings(smtp_server.port), msg)
    [got] = smtp_server.wait_for(1)
    assert got.rcpt_tos == ["ada@example.org"]
    headers = [
        line.split(b":", 1)[0].lower() for line in got.data.split(b"\r\n\r\n")[0].split(b"\r\n")
    ]
    assert headers.count(b"subject") == 1
    assert b"bcc" not in headers
    assert b"cc" not in headers
    sent = parsed(got.data)
    assert sent["Subject"] == "Hi Bcc: evil@example.net"
    assert sent["X-Case"] == "12 Bcc: evil@example.net"


def test_injection_in_an_address_is_refused() -> None:
    with pytest.raises(ValueError):
        message(to_addr="ada@example.org\r\nBcc: evil@example.net")
    with pytest.raises(ValueError):
        message(extra_headers={"Bcc": "evil@example.net"})


def test_marker_first_and_threading_headers() -> None:
    msg = message(
        html="<html><body><p>We ordered a new drum.</p></body></html>",
        marker=MARKER,
        in_reply_to="parent@mail.example.org",
        references=[
            "<root@mail.example.org> <mid@mail.example.org>",
            "<" + "x" * 90 + "@long.example>",
        ],
        auto_submitted="auto-replied",
    )
    sent = parsed(msg.as_bytes())
    assert sent.get_body(("plain",)).get_content().splitlines()[0] == MARKER
    html = sent.get_body(("html",)).get_content()
    assert html.index(MARKER) < html.index("We ordered")
    assert sent["In-Reply-To"] == "<parent@mail.example.org>"
    refs = str(sent["References"]).split()
    assert refs == ["<root@mail.example.org>", "<mid@mail.example.org>", "<" + "x" * 90 + "@long.example>",
                    "<parent@mail.example.org>"]  # fmt: skip
    assert b"=?" not in msg.as_bytes().split(b"\r\n\r\n")[0]  # ids never RFC 2047 encoded
    assert sent["Auto-Submitted"] == "auto-replied"
    assert sent["X-Auto-Response-Suppress"] == "All"
    assert sent["Date"] is not None


def test_non_ascii_goes_out_seven_bit() -> None:
    raw = message(subject="Grüße", to_name="Zoë", text="Schöne Grüße").as_bytes()
    assert raw.isascii()
    sent = parsed(raw)
    assert sent["Subject"] == "Grüße"
    assert sent.get_content().strip() == "Schöne Grüße"


def test_no_auto_headers_for_agent_replies() -> None:
    msg = message()
    assert msg["Auto-Submitted"] is None
    assert msg["X-Auto-Response-Suppress"] is None


def test_every_failure_is_a_mail_error() -> None:
    for cls in (TemporaryFailure, PermanentFailure):
        assert issubclass(cls, MailError)
