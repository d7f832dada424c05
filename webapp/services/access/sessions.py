"""Signed-in sessions kept on the server: started at sign-in, checked on every request, ended by
Sign out, a password change, Sign out everywhere, deactivation, or the idle and absolute timeouts.

The browser's cookie carries a random token; the table keeps its SHA-256 only.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, select, update

from webapp.db import utcnow
from webapp.models import User, UserSession

TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often, not per request


@dataclass(frozen=True)
class Timeouts:
    idle: timedelta  # ends a session not used for this long
    absolute: timedelta  # ends a session this long after sign-in, used or not


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    db: Session, user_id: int, timeouts: Timeouts, user_agent: str = "", ip: str = ""
) -> str:
    """A new session for the user; returns the token for the cookie (only its hash is stored).
    Sessions past the absolute timeout are deleted on the way: they can never be used again."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.exec(delete(UserSession).where(col(UserSession.created_at) < now - timeouts.absolute))
    db.add(
        UserSession(
            id=_hash(token),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            user_agent=(user_agent or "")[:200],
            ip=(ip or "")[:64],
        )
    )
    db.commit()
    return token


def current_id(token: str | None) -> str | None:
    """The session id (hash) of a cookie's token."""
    return _hash(token) if token else None


def load_user(db: Session, token: str, timeouts: Timeouts, now: datetime | None = None):
    """The signed-in user of this token, or None when its session is over (signed out, revoked,
    timed out, or its user deactivated or gone)."""
    now = now or utcnow()
    row = db.get(UserSession, _hash(token))
    if row is None or row.revoked_at is not None:
        return None
    if now - row.last_seen_at > timeouts.idle or now - row.created_at > timeouts.absolute:
        _revoke(db, [row], now)
        return None
    user = db.get(User, row.user_id)
    if user is None or not getattr(user, "active", True):
        _revoke(db, [row], now)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        db.add(row)
        db.commit()
    return user


def _revoke(db: Session, rows: list[UserSession], now: datetime) -> None:
    for row in rows:
        row.revoked_at = now
        db.add(row)
    db.commit()


def end_session(db: Session, token: str | None) -> None:
    """Sign out: this browser's session ends."""
    if token:
        row = db.get(UserSession, _hash(token))
        if row is not None and row.revoked_at is None:
            _revoke(db, [row], utcnow())


def end_sessions(db: Session, user_id: int, except_session: str | None = None) -> int:
    """End every session of the user (deactivation, Sign out everywhere), or every one but
    `except_session` (a session id, see current_id: a password change keeps the browser that
    made it). Returns how many were ended."""
    query = (
        update(UserSession)
        .where(col(UserSession.user_id) == user_id, col(UserSession.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    if except_session is not None:
        query = query.where(col(UserSession.id) != except_session)
    ended = db.exec(query).rowcount  # type: ignore[call-overload]
    db.commit()
    return ended


def open_sessions(db: Session, user_id: int, timeouts: Timeouts) -> list[UserSession]:
    """The user's sessions that are still open, the most recently used first."""
    now = utcnow()
    rows = db.exec(
        select(UserSession)
        .where(
            col(UserSession.user_id) == user_id,
            col(UserSession.revoked_at).is_(None),
            col(UserSession.last_seen_at) > now - timeouts.idle,
            col(UserSession.created_at) > now - timeouts.absolute,
        )
        .order_by(col(UserSession.last_seen_at).desc())
    ).all()
    return list(rows)
