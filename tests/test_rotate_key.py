"""`flask --app webapp rotate-key`: every stored secret re-encrypted with the first key of
ENCRYPTION_KEY, so that the old key can go."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlmodel import select

from tests.helpers.mailboxes import make_mailbox
from webapp import crypto
from webapp.db import new_session, utcnow
from webapp.models import Mailbox, OAuthAuthorization, User


@pytest.fixture(autouse=True)
def _restore_keys():
    saved = crypto._KEYS
    yield
    crypto.configure(list(saved))


@pytest.fixture
def stored(app, app_env, dovecot, mail_user) -> str:
    """A mailbox with five secrets and a pending authorization, saved with the old key."""
    box = make_mailbox(
        app_env, dovecot, mail_user,
        client_secret_enc=crypto.encrypt("client-secret"),
        access_token_enc=crypto.encrypt("access-token"),
        refresh_token_enc=crypto.encrypt("refresh-token"),
        smtp_password_enc=crypto.encrypt("smtp-password"),
    )  # fmt: skip
    with new_session(app_env["DATABASE_URL"]) as db:
        user = User(email="admin@example.com", password_hash="x")
        db.add(user)
        db.commit()
        db.add(OAuthAuthorization(
            state="s1", mailbox_id=box, user_id=user.id, session_nonce="n",
            code_verifier_enc=crypto.encrypt("verifier"), token_url="https://x.example/token",
            redirect_uri="http://127.0.0.1:5000/oauth/callback",
            expires_at=utcnow() + timedelta(minutes=10),
        ))  # fmt: skip
        db.commit()
    return app_env["ENCRYPTION_KEY"]


def _secrets(url: str) -> list[str | None]:
    with new_session(url) as db:
        box = db.exec(select(Mailbox)).one()
        pending = db.exec(select(OAuthAuthorization)).one()
        columns = ("password_enc", "client_secret_enc", "access_token_enc", "refresh_token_enc")
        values = [getattr(box, c) for c in (*columns, "smtp_password_enc")]
        return [crypto.decrypt(v) for v in (*values, pending.code_verifier_enc)]


def _runner_with_keys(monkeypatch, keys: str):
    from webapp import create_app

    monkeypatch.setenv("ENCRYPTION_KEY", keys)
    return create_app({"TESTING": True}).test_cli_runner()


def test_rotation_makes_every_secret_readable_with_the_new_key_alone(monkeypatch, app_env, stored):
    new = Fernet.generate_key().decode()
    result = _runner_with_keys(monkeypatch, f"{new},{stored}").invoke(args=["rotate-key"])
    assert result.exit_code == 0, result.output
    crypto.configure([new])
    assert _secrets(app_env["DATABASE_URL"])[1:] == [
        "client-secret", "access-token", "refresh-token", "smtp-password", "verifier",
    ]  # fmt: skip


def test_it_says_how_many_rows_it_touched(monkeypatch, stored):
    new = Fernet.generate_key().decode()
    result = _runner_with_keys(monkeypatch, f"{new},{stored}").invoke(args=["rotate-key"])
    assert "Re-encrypted the secrets of 2 rows" in result.output
    assert "mailbox: 1, oauth_authorization: 1" in result.output


def test_without_rotation_the_new_key_alone_reads_nothing(monkeypatch, app_env, stored):
    new = Fernet.generate_key().decode()
    _runner_with_keys(monkeypatch, f"{new},{stored}")
    crypto.configure([new])
    with pytest.raises(crypto.SecretUnreadable):
        _secrets(app_env["DATABASE_URL"])


def test_a_secret_no_key_reads_stops_the_rotation_unchanged(monkeypatch, app_env, stored):
    before = _raw_password(app_env)
    other = Fernet.generate_key().decode()
    result = _runner_with_keys(monkeypatch, other).invoke(args=["rotate-key"])
    assert result.exit_code != 0
    assert "mailbox.password_enc cannot be decrypted" in result.output
    assert _raw_password(app_env) == before


def test_with_one_key_it_says_how_to_rotate(runner, stored):
    result = runner.invoke(args=["rotate-key"])
    assert "To rotate, put a new key first" in result.output


def _raw_password(app_env) -> str:
    with new_session(app_env["DATABASE_URL"]) as db:
        return db.exec(select(Mailbox)).one().password_enc
