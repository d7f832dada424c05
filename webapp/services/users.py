"""Admin accounts: creation, password checks and per-account login throttling."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.db import utcnow
from webapp.models import ApiToken, User

FREE_ATTEMPTS = 5
MAX_LOCK = timedelta(minutes=15)
MIN_PASSWORD = 10


class UserError(ValueError):
    """A user cannot be created as asked; the message says why."""


def has_users(db: Session) -> bool:
    return db.exec(select(func.count()).select_from(User)).one() > 0


def create_user(db: Session, email: str, password: str) -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise UserError("Enter an email address.")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"Use a password of at least {MIN_PASSWORD} characters.")
    if db.exec(select(User).where(User.email == email)).first():
        raise UserError("An admin with this email address exists already.")
    user = User(email=email, password_hash=generate_password_hash(password))
    db.add(user)
    db.commit()
    db.refresh(user)
    return user


@dataclass
class LoginResult:
    user: User | None
    error: str | None = None


def _lock_for(failures: int) -> timedelta:
    return min(timedelta(seconds=30 * 2 ** (failures - FREE_ATTEMPTS)), MAX_LOCK)


def authenticate(
    db: Session, email: str, password: str, now: datetime | None = None
) -> LoginResult:
    """Check a login; after FREE_ATTEMPTS failures the account is locked for a growing time."""
    now = now or utcnow()
    user = db.exec(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        check_password_hash(generate_password_hash("x"), password)  # same cost as a real check
        return LoginResult(None, "Email or password is wrong.")
    if user.locked_until and user.locked_until > now:
        wait = int((user.locked_until - now).total_seconds()) + 1
        return LoginResult(
            None,
            f"Too many failed logins for this account. Try again in {wait} seconds.",
        )
    if not check_password_hash(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= FREE_ATTEMPTS:
            user.locked_until = now + _lock_for(user.failed_logins)
        db.add(user)
        db.commit()
        return LoginResult(None, "Email or password is wrong.")
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    db.add(user)
    db.commit()
    return LoginResult(user)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Session, name: str) -> tuple[ApiToken, str]:
    """Make an API token; the plain token is returned once and only its hash is stored."""
    token = "mc_" + secrets.token_urlsafe(32)
    row = ApiToken(name=name.strip() or "token", token_hash=_hash_token(token), prefix=token[:8])
    db.add(row)
    db.commit()
    db.refresh(row)
    return row, token


def check_token(db: Session, token: str) -> ApiToken | None:
    row = db.exec(select(ApiToken).where(ApiToken.token_hash == _hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    row.last_used_at = utcnow()
    db.add(row)
    db.commit()
    return row


def revoke_token(db: Session, token_id: int) -> None:
    row = db.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        db.add(row)
        db.commit()
