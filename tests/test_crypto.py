"""Secrets at rest: MultiFernet keys, rotation, and a clear error for a lost key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from webapp import crypto


@pytest.fixture(autouse=True)
def _restore_keys():
    saved = crypto._KEYS
    yield
    crypto.configure(list(saved))


def test_a_new_key_first_still_reads_secrets_saved_with_the_old_one():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    crypto.configure([old])
    token = crypto.encrypt("mailbox password")
    assert "mailbox password" not in token
    crypto.configure([new, old])  # ENCRYPTION_KEY="new,old"
    assert crypto.decrypt(token) == "mailbox password"
    rotated = crypto.rotate(token)
    crypto.configure([new])  # the old key can go once everything is rotated
    assert crypto.decrypt(rotated) == "mailbox password"


def test_a_secret_saved_with_an_unknown_key_says_what_to_do():
    crypto.configure([Fernet.generate_key().decode()])
    token = crypto.encrypt("x")
    crypto.configure([Fernet.generate_key().decode()])
    with pytest.raises(crypto.SecretUnreadable, match="ENCRYPTION_KEY"):
        crypto.decrypt(token)


def test_keys_are_generated_once_into_the_instance_folder(tmp_path, monkeypatch):
    from webapp.config import load_settings

    for var in ("ENCRYPTION_KEY", "SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    first, second = load_settings(), load_settings()
    assert first.encryption_keys == second.encryption_keys
    assert first.secret_key == second.secret_key
    assert (tmp_path / "encryption.key").stat().st_mode & 0o077 == 0
    assert first.database_url == f"sqlite:///{tmp_path / 'mailchannel.db'}"


def test_heroku_style_database_urls_use_psycopg(monkeypatch, tmp_path):
    from webapp.config import load_settings

    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:5432/desk")
    assert load_settings().database_url == "postgresql+psycopg://u:p@db.example:5432/desk"
