"""Accounts and API tokens; sign-in and password checks are in services/signin.py."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, func, select
from werkzeug.security import generate_password_hash

from webapp.db import insert_ignore, utcnow
from webapp.models import ApiToken, InstallStep, User

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


def create_first_admin(db: Session, email: str, password: str) -> User | None:
    """The installation's first admin, or None when there is one already: of two forms sent at
    the same moment only the one that inserts the "first_admin" step row creates an admin (the
    other waits on the row's primary key, then inserts nothing)."""
    claim = insert_ignore(db, InstallStep).values(name="first_admin", done_at=utcnow())
    if db.exec(claim).rowcount == 0 or has_users(db):  # type: ignore[call-overload]
        db.rollback()
        return None
    try:
        return create_user(db, email, password)  # commits the claim with the user
    except UserError:
        db.rollback()
        raise


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
