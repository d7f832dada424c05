"""Pytest plugin: real Dovecot, Redis and SMTP servers on 127.0.0.1 for the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.dovecot import DovecotServer, MailUser
from tests.servers.redis import RedisServer
from tests.servers.smtp import CapturingSMTPServer
from tests.servers.tls import TestCA, make_test_ca


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A CA plus server, self-signed and wrong-host certificates (PEM paths)."""
    return make_test_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def dovecot(test_ca: TestCA) -> Iterator[DovecotServer]:
    """One Dovecot for the session: imap/imaps/pop3/pop3s with the test CA's cert."""
    server = DovecotServer(cert_pem=test_ca.cert_pem, key_pem=test_ca.key_pem).start()
    yield server
    server.stop()


@pytest.fixture
def mail_user(dovecot: DovecotServer) -> MailUser:
    """A fresh user (empty INBOX) on the session Dovecot: .email, .password, .deliver()."""
    return dovecot.new_user()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server on a unix socket for the session."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """REDIS_URL of the session redis-server (unix://…)."""
    return redis_server.url


@pytest.fixture
def smtp_server() -> Iterator[CapturingSMTPServer]:
    """A capturing SMTP server without AUTH or TLS; script it with set_responses()."""
    server = CapturingSMTPServer().start()
    yield server
    server.stop()
