"""The nonces of the authorizations this browser session started, kept in the Flask session.

Both the provider's redirect (oauth.routes) and a pasted code (mailboxes.routes) must come
from an authorization this session started.
"""

from __future__ import annotations

from flask import session

NONCES_KEPT = 5


def remember_nonce(nonce: str) -> None:
    session["oauth_nonces"] = (session.get("oauth_nonces", []) + [nonce])[-NONCES_KEPT:]


def session_nonces() -> list[str]:
    return list(session.get("oauth_nonces", []))
