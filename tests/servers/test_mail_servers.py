"""The test servers themselves: Dovecot, redis-server, the capturing SMTP server, the TLS
greeting server. The product's tests rely on them behaving as real servers do."""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest
import redis
from imapclient import IMAPClient

from tests.servers.smtp import CapturingSMTPServer
from tests.servers.tls import TlsGreetingServer

MESSAGE = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hello\r\n\r\nBody\r\n"


def test_greeting_server_is_fine_with_the_right_certificate(test_ca):
    with TlsGreetingServer(test_ca.cert_pem, test_ca.key_pem) as server:
        context = ssl.create_default_context(cafile=str(test_ca.ca_pem))
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.recv(100).startswith(b"* OK")


def test_user_added_right_after_a_login_can_log_in_at_once(dovecot, test_ca):
    context = ssl.create_default_context(cafile=str(test_ca.ca_pem))
    for _ in range(3):
        user = dovecot.new_user()
        with IMAPClient(dovecot.host, dovecot.imaps_port, ssl_context=context, timeout=5) as c:
            c.login(user.email, user.password)
            c.logout()


def test_clear_and_uidvalidity_change(dovecot, mail_user, test_ca):
    context = ssl.create_default_context(cafile=str(test_ca.ca_pem))

    def status() -> tuple[int, int]:
        with IMAPClient(dovecot.host, dovecot.imaps_port, ssl_context=context, timeout=5) as c:
            c.login(mail_user.email, mail_user.password)
            info = c.select_folder("INBOX", readonly=True)
            c.logout()
        return info[b"UIDVALIDITY"], info[b"EXISTS"]

    mail_user.deliver(MESSAGE)
    mail_user.deliver(MESSAGE)
    first, count = status()
    assert count == 2
    dovecot.set_uidvalidity_change(mail_user.email)
    second, count = status()
    dovecot.set_uidvalidity_change(mail_user.email)
    third, count = status()
    assert first < second < third
    assert count == 2
    dovecot.clear(mail_user.email)
    assert status()[1] == 0


def test_redis_answers_ping(redis_server, redis_url):
    assert redis_url.startswith("unix://")
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping() is True


def test_smtp_server_captures_a_message(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.sendmail("from@example.com", ["to@example.com"], MESSAGE)
    (captured,) = smtp_server.wait_for(1)
    assert captured.mail_from == "from@example.com"
    assert captured.rcpt_tos == ["to@example.com"]
    assert b"Subject: hello" in captured.data


def test_smtp_scripted_temporary_failure_then_success(smtp_server):
    smtp_server.set_responses(["451 4.3.0 Try again later", "250 OK queued"])
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("from@example.com", ["to@example.com"], MESSAGE)
        assert info.value.smtp_code == 451
        client.rset()
        client.sendmail("from@example.com", ["to@example.com"], MESSAGE)
    assert smtp_server.attempts == 2
    assert len(smtp_server.messages) == 1


def test_smtp_auth_after_starttls(test_ca):
    tls = (test_ca.cert_pem, test_ca.key_pem)
    with CapturingSMTPServer(auth=("sender", "s3cret"), tls=tls) as server:
        context = ssl.create_default_context(cafile=str(test_ca.ca_pem))
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.starttls(context=context)
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("sender", "wrong")
            client.login("sender", "s3cret")
            client.sendmail("sender@example.com", ["to@example.com"], MESSAGE)
        assert len(server.wait_for(1)) == 1
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            with pytest.raises(smtplib.SMTPSenderRefused):  # 530: AUTH required
                client.sendmail("sender@example.com", ["to@example.com"], MESSAGE)
