"""A downgrade leaks no login: a man in the middle removes STARTTLS/STLS in front of the real
Dovecot, and no password or token crosses it unless the mailbox allows logins without
encryption."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.helpers.mailboxes import make_mailbox
from tests.helpers.proxy import DowngradeProxy, strip_encryption_offer
from tests.helpers.rows import mailbox_of
from tests.helpers.web import mailbox_data
from tests.servers.smtp import CapturingSMTPServer
from webapp import crypto
from webapp.db import new_session, utcnow
from webapp.mail.connect import ServerSettings, count_messages
from webapp.mail.errors import EncryptionMissing, MechanismNotOffered
from webapp.mail.send import SmtpSettings, send_message
from webapp.services.fetching.verify import run_verification

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nbody\r\n"
TOKEN = "ya29.secret-access-token-0123456789"
PORTS = {"imap": "imap_port", "pop3": "pop3_port"}


@pytest.fixture(params=["imap", "pop3"])
def protocol(request) -> str:
    return request.param


@pytest.fixture
def proxy(dovecot, protocol) -> Iterator[DowngradeProxy]:
    with DowngradeProxy(dovecot.host, getattr(dovecot, PORTS[protocol])) as mitm:
        yield mitm


def _xoauth2(user: str) -> bytes:
    return base64.b64encode(f"user={user}\x01auth=Bearer {TOKEN}\x01\x01".encode())


def _settings(proxy, user, protocol, **extra) -> ServerSettings:
    values = {"password": user.password, "timeout": 5.0, **extra}
    return ServerSettings(protocol, proxy.host, proxy.port, user.email, **values)


def test_the_proxy_removes_the_offer_of_encryption():
    greeting = b"* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS AUTH=PLAIN] Dovecot ready.\r\n"
    assert b"STARTTLS" not in strip_encryption_offer(greeting)
    assert strip_encryption_offer(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n") == (
        b"* CAPABILITY IMAP4rev1\r\n"
    )
    assert strip_encryption_offer(b"STLS\r\n") == b""


def test_no_password_crosses_a_downgrade(proxy, mail_user, protocol):
    with pytest.raises(EncryptionMissing) as info:
        count_messages(_settings(proxy, mail_user, protocol))
    assert mail_user.password.encode() not in proxy.client_bytes
    upgrade = "STARTTLS" if protocol == "imap" else "STLS"
    assert info.value.message == (
        f"The server at {proxy.host}:{proxy.port} did not offer encryption ({upgrade}), "
        "so the password was not sent."
    )
    assert "Allow login without encryption" in info.value.advice


def test_no_token_crosses_a_downgrade(proxy, mail_user, protocol):
    s = _settings(proxy, mail_user, protocol, password=None, access_token=TOKEN)
    with pytest.raises(EncryptionMissing) as info:
        count_messages(s)
    sent = proxy.client_bytes
    assert _xoauth2(mail_user.email) not in sent
    assert TOKEN.encode() not in sent
    assert "so the access token was not sent" in info.value.message


def test_allowed_login_goes_through_the_proxy_unencrypted(proxy, mail_user, protocol):
    mail_user.deliver(MESSAGE)
    result = count_messages(_settings(proxy, mail_user, protocol, allow_plaintext_login=True))
    assert result.count == 1
    assert result.plaintext is True
    assert mail_user.password.encode() in proxy.client_bytes  # what the refusal prevents


def _save(admin, proxy, user, protocol: str, **overrides) -> tuple[int, str]:
    data = mailbox_data(
        admin,
        email_address=user.email,
        password=user.password,
        protocol=protocol,
        host=proxy.host,
        port=str(proxy.port),
        **overrides,
    )
    resp = admin.post("/mailboxes/new", data=data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    location = resp.headers["Location"]
    return int(re.search(r"/mailboxes/(\d+)/setup", location).group(1)), location


def test_mailbox_setup_explains_the_refused_login(admin, proxy, mail_user, protocol, run_worker):
    _box, setup_url = _save(admin, proxy, mail_user, protocol)
    run_worker()
    page = admin.get(setup_url).get_data(as_text=True)
    assert mail_user.password.encode() not in proxy.client_bytes
    assert "did not offer encryption" in page
    assert "so the password was not sent" in page
    assert "Allow login without encryption" in page


def test_the_ticked_box_logs_in_and_warns(admin, app, proxy, mail_user, protocol, run_worker):
    mail_user.deliver(MESSAGE)
    box, setup_url = _save(admin, proxy, mail_user, protocol, allow_plaintext_login="y")
    run_worker()
    page = admin.get(setup_url).get_data(as_text=True)
    assert "1 message in this mailbox" in page
    assert "travel unencrypted" in page
    assert mailbox_of(app, box).allow_plaintext_login is True


def test_the_form_has_the_box_unticked_with_a_warning(admin):
    page = admin.get("/mailboxes/new").get_data(as_text=True)
    field = re.search(
        r'<div class="field check" id="field-allow_plaintext_login">.*?</div>', page, re.S
    )
    assert field is not None
    assert "checked" not in field.group(0)
    assert 'class="warning"' in field.group(0)


def test_oauth_verification_sends_no_token(app_env, dovecot, proxy, mail_user, protocol, test_ca):
    crypto.configure([app_env["ENCRYPTION_KEY"]])
    box = make_mailbox(
        app_env,
        dovecot,
        mail_user,
        protocol=protocol,
        host=proxy.host,
        port=proxy.port,
        auth_type="oauth",
        access_token_enc=crypto.encrypt(TOKEN),
        token_expires_at=utcnow() + timedelta(hours=1),
    )
    with new_session(app_env["DATABASE_URL"]) as db:
        done = run_verification(db, box, str(test_ca.ca_pem))
        assert done.last_error_kind == "encryption_missing"
    assert _xoauth2(mail_user.email) not in proxy.client_bytes


# -- SMTP: Security None logs in only when allowed ---------------------------------------


def _smtp_message():
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "desk@example.com", "ada@example.org", "Hi"
    msg.set_content("Hello")
    return msg


def test_smtp_none_sends_no_password():
    with CapturingSMTPServer(auth=("desk", "smtp-pw-123"), auth_require_tls=False) as server:
        s = SmtpSettings("127.0.0.1", server.port, "none", username="desk", password="smtp-pw-123")
        with pytest.raises(EncryptionMissing) as info:
            send_message(s, _smtp_message(), "desk@example.com", ["ada@example.org"])
        assert server.messages == []
    assert "SMTP password was not sent" in info.value.message


def test_smtp_none_logs_in_when_allowed():
    with CapturingSMTPServer(auth=("desk", "smtp-pw-123"), auth_require_tls=False) as server:
        s = SmtpSettings("127.0.0.1", server.port, "none", username="desk", password="smtp-pw-123",
                         allow_plaintext_login=True)  # fmt: skip
        send_message(s, _smtp_message(), "desk@example.com", ["ada@example.org"])
        assert len(server.wait_for(1)) == 1


def test_smtp_starttls_stripped_sends_no_password(test_ca):
    tls = (test_ca.cert_pem, test_ca.key_pem)
    with CapturingSMTPServer(auth=("desk", "smtp-pw-123"), tls=tls) as server:
        with DowngradeProxy("127.0.0.1", server.port) as mitm:
            s = SmtpSettings("127.0.0.1", mitm.port, "starttls", username="desk",
                             password="smtp-pw-123", ca_bundle=str(test_ca.ca_pem))  # fmt: skip
            with pytest.raises(MechanismNotOffered) as info:
                send_message(s, _smtp_message(), "desk@example.com", ["ada@example.org"])
            assert b"smtp-pw-123" not in mitm.client_bytes
            assert base64.b64encode(b"\0desk\0smtp-pw-123") not in mitm.client_bytes
    assert "so the password was not sent" in info.value.message
