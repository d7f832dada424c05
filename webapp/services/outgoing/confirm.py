"""Signed, expiring links that release a held message: "confirm you sent this".

The token carries only the held message's id, signed with the app's SECRET_KEY and a
salt of its own, so a token made for another purpose (a session, an API form) never
passes here. itsdangerous checks the signature before the age, so an expired token
is known to be genuine and the page can offer "ask for a new link" instead of "forged".
"""

from __future__ import annotations

from datetime import timedelta

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

SALT = "mailchannel.confirm-sender"
SecretKey = str | bytes | list[str | bytes]  # a list rotates keys: newest last


class ConfirmationError(Exception):
    """The link cannot release the message."""


class ConfirmationInvalid(ConfirmationError):
    """The token is forged, damaged or not a confirmation token."""


class ConfirmationExpired(ConfirmationError):
    """The token is genuine but older than max_age."""


def _serializer(secret_key: SecretKey) -> URLSafeTimedSerializer:
    if not secret_key:
        raise ValueError("a SECRET_KEY is needed to sign confirmation links")
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def make_token(held_id: int, secret_key: SecretKey) -> str:
    """A URL-safe token naming the held message `held_id`."""
    if isinstance(held_id, bool) or not isinstance(held_id, int) or held_id < 1:
        raise ValueError(f"held_id must be a positive integer, not {held_id!r}")
    return str(_serializer(secret_key).dumps(held_id))


def read_token(token: str, secret_key: SecretKey, max_age: int | timedelta) -> int:
    """The held message's id; raise ConfirmationInvalid or ConfirmationExpired."""
    seconds = int(max_age.total_seconds()) if isinstance(max_age, timedelta) else int(max_age)
    try:
        held_id = _serializer(secret_key).loads(token, max_age=seconds)
    except SignatureExpired as exc:
        raise ConfirmationExpired("This confirmation link has expired.") from exc
    except BadData as exc:
        raise ConfirmationInvalid("This confirmation link is not valid.") from exc
    if isinstance(held_id, bool) or not isinstance(held_id, int) or held_id < 1:
        raise ConfirmationInvalid("This confirmation link is not valid.")
    return held_id
