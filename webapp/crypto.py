"""Secrets at rest: MultiFernet so that ENCRYPTION_KEY can hold several keys for rotation."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = [
    "InvalidToken",
    "SecretUnreadable",
    "configure",
    "decrypt",
    "encrypt",
    "key_count",
    "new_key",
    "rotate",
]


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key."""


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def configure(keys: list[str]) -> None:
    """Set the keys in use for this process; the first one encrypts, all of them decrypt."""
    global _KEYS
    _KEYS = tuple(keys)


_KEYS: tuple[str, ...] = ()


def encrypt(plaintext: str | None) -> str | None:
    if plaintext is None or plaintext == "":
        return None
    return _fernet(_KEYS).encrypt(plaintext.encode()).decode()


def decrypt(token: str | None) -> str | None:
    if not token:
        return None
    try:
        return _fernet(_KEYS).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted: ENCRYPTION_KEY does not hold the key it was saved with."
        ) from exc


def key_count() -> int:
    """How many keys ENCRYPTION_KEY holds (the first encrypts, all decrypt)."""
    return len(_KEYS)


def new_key() -> str:
    """A fresh key to put first in ENCRYPTION_KEY."""
    return Fernet.generate_key().decode()


def rotate(token: str | None) -> str | None:
    """Re-encrypt a stored secret with the first (newest) key; InvalidToken if no key fits."""
    return _fernet(_KEYS).rotate(token.encode()).decode() if token else None
