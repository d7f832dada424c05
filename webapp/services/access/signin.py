"""Sign-in: password checks, throttling by address and by account, and password changes.

Failed sign-ins are counted under three keys, never as a lock on the account:
- the client address: 10 free failures, whatever accounts were tried;
- the account from that address: 3 free failures;
- the account from every address: 20 free failures, but this one only holds back addresses that
  have already failed for the account. A fresh address is never held back by it, so the right
  password from somewhere new still signs in while the account is under attack from elsewhere.
Past the free failures each further attempt must wait 2, 4, 8 … seconds, at most 15 minutes.
A held-back attempt is refused without checking the password and does not count. Counts are
forgotten 24 hours after their last failure; a successful sign-in clears the account's count for
that address. Unknown and known email addresses are counted and answered alike, and both cost
one password hash check.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlmodel import Session, col, delete, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.db import insert_ignore, utcnow
from webapp.models import SigninThrottle, User
from webapp.services.access import audit

FREE_BY_ADDRESS = 10
FREE_BY_ACCOUNT_AND_ADDRESS = 3
FREE_BY_ACCOUNT = 20
MAX_WAIT = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=24)
MIN_PASSWORD = 10
WRONG = "Email or password is wrong."


@dataclass
class SigninResult:
    user: User | None
    error: str | None = None
    retry_at: datetime | None = None  # set when the attempt was held back


class PasswordError(ValueError):
    """A password change was refused; `field` is the form field the message belongs to."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def verify_password(password_hash: str, password: str) -> bool:
    """The one place a password is checked against a hash (the costly, timed step)."""
    return check_password_hash(password_hash, password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash no password matches, checked for unknown emails so that they cost the same time."""
    return generate_password_hash(secrets.token_urlsafe(24))


def wait_after(failures: int, free: int) -> timedelta:
    """How long the next attempt must wait after `failures` failures when `free` are allowed."""
    if failures < free:
        return timedelta(0)
    return min(timedelta(seconds=2 ** min(failures - free + 1, 20)), MAX_WAIT)


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _keys(email: str, address: str) -> tuple[str, str, str]:
    """Keys of the address, of the account from the address, and of the account."""
    return _key("address", address), _key("pair", email, address), _key("account", email)


def retry_at(db: Session, email: str, address: str, now: datetime | None = None) -> datetime | None:
    """When this address may try this account again, or None if it may now."""
    now = now or utcnow()
    by_address, pair, account = _keys(email, address)
    rows = {
        r.key: r
        for r in db.exec(
            select(SigninThrottle).where(
                col(SigninThrottle.key).in_([by_address, pair, account]),
                col(SigninThrottle.last_failure_at) > now - FORGET_AFTER,
            )
        )
    }
    limits = [(by_address, FREE_BY_ADDRESS), (pair, FREE_BY_ACCOUNT_AND_ADDRESS)]
    if pair in rows:  # only addresses that failed for this account wait for the account's count
        limits.append((account, FREE_BY_ACCOUNT))
    times = [
        rows[key].last_failure_at + wait_after(rows[key].failures, free)
        for key, free in limits
        if key in rows
    ]
    latest = max(times, default=None)
    return latest if latest is not None and latest > now else None


def record_failure(db: Session, email: str, address: str, now: datetime | None = None) -> None:
    now = now or utcnow()
    db.exec(delete(SigninThrottle).where(col(SigninThrottle.last_failure_at) <= now - FORGET_AFTER))
    keys = _keys(email, address)
    for key in keys:
        db.exec(insert_ignore(db, SigninThrottle).values(key=key, failures=0, last_failure_at=now))
    db.exec(
        update(SigninThrottle)
        .where(col(SigninThrottle.key).in_(keys))
        .values(failures=SigninThrottle.failures + 1, last_failure_at=now)
    )
    db.commit()


def held_back_message(until: datetime, now: datetime) -> str:
    seconds = max(1, math.ceil((until - now).total_seconds()))
    wait = f"{seconds} seconds" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"
    return (
        f"Too many failed sign-ins from this address. Try again in {wait} "
        f"(after {until:%H:%M:%S} UTC)."
    )


def authenticate(
    db: Session, email: str, password: str, address: str, now: datetime | None = None
) -> SigninResult:
    """Check a sign-in from a client address; held back for a while after failures."""
    now = now or utcnow()
    email = email.strip().lower()
    until = retry_at(db, email, address, now)
    if until is not None:
        return SigninResult(None, held_back_message(until, now), until)
    user = db.exec(select(User).where(User.email == email)).first()
    if user is None:
        verify_password(_dummy_hash(), password)  # the same cost as a real check
        ok = False
    else:
        ok = verify_password(user.password_hash, password) and getattr(user, "active", True)
    if not ok:
        record_failure(db, email, address, now)
        return SigninResult(None, WRONG)
    db.exec(delete(SigninThrottle).where(col(SigninThrottle.key) == _keys(email, address)[1]))
    user.last_login_at = now
    db.add(user)
    db.commit()
    return SigninResult(user)


def change_password(
    db: Session, user: User, current: str, new: str, address: str, now: datetime | None = None
) -> None:
    """Set a new password after checking the current one (throttled like a sign-in)."""
    now = now or utcnow()
    until = retry_at(db, user.email, address, now)
    if until is not None:
        raise PasswordError("current_password", held_back_message(until, now))
    if not verify_password(user.password_hash, current):
        record_failure(db, user.email, address, now)
        raise PasswordError("current_password", "This is not your current password.")
    if len(new) < MIN_PASSWORD:
        raise PasswordError("new_password", f"Use at least {MIN_PASSWORD} characters.")
    user.password_hash = generate_password_hash(new)
    db.add(user)
    audit.record(db, audit.PASSWORD_CHANGED, user.id, audit.user_target(user), None, address)
    db.commit()
