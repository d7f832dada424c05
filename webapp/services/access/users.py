"""The team's accounts: creation, roles, deactivation, and the API tokens admins issue.
Sign-in, throttling and password checks are in services/access/signin.py."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, col, func, select
from werkzeug.security import generate_password_hash

from webapp.db import insert_ignore, utcnow
from webapp.models import ApiToken, InstallStep, User
from webapp.models.user import ADMIN, ROLES
from webapp.services.access import audit, sessions

MIN_PASSWORD = 10


WRONG_LOGIN = "Email or password is wrong."


class UserError(ValueError):
    """A user cannot be created or changed as asked; the message says why, `field` where."""

    def __init__(self, message: str, field: str = "email") -> None:
        super().__init__(message)
        self.field = field


def has_users(db: Session) -> bool:
    return db.exec(select(func.count()).select_from(User)).one() > 0


def create_user(
    db: Session,
    email: str,
    password: str,
    *,
    name: str = "",
    role: str = ADMIN,
    actor: int | None = None,
    address: str | None = None,
) -> User:
    """A new user (an admin unless told otherwise); the name defaults to the email's local part.

    `actor`: the admin who added them; None from the command line. The very first user
    creates themselves."""
    email = email.strip().lower()
    if "@" not in email:
        raise UserError("Enter an email address.")
    if role not in ROLES:
        raise UserError("Choose Admin or Agent.", field="role")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"Use a password of at least {MIN_PASSWORD} characters.", "password")
    if db.exec(select(User).where(User.email == email)).first():
        raise UserError("A user with this email address exists already.")
    name = " ".join(name.split())[:200] or email.split("@")[0]
    first = not has_users(db)
    user = User(email=email, password_hash=generate_password_hash(password), name=name, role=role)
    db.add(user)
    db.flush()
    details = {"email": email, "name": name, "role": role}
    actor = user.id if first and actor is None else actor
    audit.record(db, audit.USER_CREATED, actor, audit.user_target(user), details, address)
    db.commit()
    db.refresh(user)
    return user


def create_first_admin(
    db: Session, email: str, password: str, address: str | None = None, *, name: str = ""
) -> User | None:
    """The installation's first admin, or None when there is one already: of two forms sent at
    the same moment only the one that inserts the "first_admin" step row creates an admin (the
    other waits on the row's primary key, then inserts nothing)."""
    claim = insert_ignore(db, InstallStep).values(name="first_admin", done_at=utcnow())
    if db.exec(claim).rowcount == 0 or has_users(db):  # type: ignore[call-overload]
        db.rollback()
        return None
    try:
        return create_user(db, email, password, name=name, address=address)  # commits the claim too
    except UserError:
        db.rollback()
        raise


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    db: Session, name: str, actor: int | None = None, address: str | None = None
) -> tuple[ApiToken, str]:
    """Make an API token; the plain token is returned once and only its hash is stored."""
    token = "mc_" + secrets.token_urlsafe(32)
    row = ApiToken(name=name.strip() or "token", token_hash=_hash_token(token), prefix=token[:8])
    db.add(row)
    db.flush()
    audit.record(db, audit.TOKEN_CREATED, actor, _token_target(row), None, address)
    db.commit()
    db.refresh(row)
    return row, token


def check_token(db: Session, token: str) -> ApiToken | None:
    row = db.exec(select(ApiToken).where(ApiToken.token_hash == _hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    # Written at most once a minute, like a session's last_seen_at: a write per API call
    # waits for SQLite's lock while a fetch is filing mail.
    if row.last_used_at is None or now - row.last_used_at >= sessions.TOUCH_EVERY:
        row.last_used_at = now
        db.add(row)
        db.commit()
    return row


def _token_target(row: ApiToken) -> str:
    return f"API token {row.name} ({row.prefix}…, #{row.id})"


def revoke_token(
    db: Session, token_id: int, actor: int | None = None, address: str | None = None
) -> None:
    row = db.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        db.add(row)
        audit.record(db, audit.TOKEN_REVOKED, actor, _token_target(row), None, address)
        db.commit()


def active_user(db: Session, user_id: int | None) -> User | None:
    """The signed-in user of a session, or None when there is none or they were deactivated."""
    user = db.get(User, user_id) if user_id else None
    return user if user is not None and user.active else None


def list_users(db: Session) -> list[User]:
    return list(db.exec(select(User).order_by(col(User.active).desc(), User.email)).all())


def admin_emails(db: Session) -> list[str]:
    """Whom to ask for what only an admin may do: the active admins' addresses."""
    query = select(User.email).where(User.role == ADMIN, col(User.active).is_(True))
    return list(db.exec(query.order_by(User.email)).all())


def _other_active_admins(db: Session, user: User) -> int:
    """Active admins but `user`. Every active admin's row stays locked (PostgreSQL) until the
    caller commits, so that two admins demoting each other at once cannot leave nobody: the
    second waits, then counts again."""
    query = select(User.id).where(User.role == ADMIN, col(User.active).is_(True))
    ids = db.exec(query.with_for_update()).all()
    return len([i for i in ids if i != user.id])


LAST_ADMIN = (
    "{email} is the last active admin: make another user an admin first, or nobody could "
    "manage mailboxes and users any more."
)


def set_role(
    db: Session, user: User, role: str, actor: int | None, address: str | None = None
) -> bool:
    """Change a user's role; False when it already was. Never demotes the last active admin."""
    if role not in ROLES:
        raise UserError("Choose Admin or Agent.", field="role")
    if user.role == role:
        return False
    if user.role == ADMIN and user.active and _other_active_admins(db, user) == 0:
        message = LAST_ADMIN.format(email=user.email)
        db.rollback()
        raise UserError(message, field="role")
    details = {"from": user.role, "to": role}
    user.role = role
    db.add(user)
    audit.record(db, audit.USER_ROLE, actor, audit.user_target(user), details, address)
    db.commit()
    return True


def set_active(
    db: Session, user: User, active: bool, actor: int | None, address: str | None = None
) -> bool:
    """Deactivate (signed out at once, cannot sign in) or reactivate; False when unchanged."""
    if user.active == active:
        return False
    if not active and user.role == ADMIN and _other_active_admins(db, user) == 0:
        message = LAST_ADMIN.format(email=user.email)
        db.rollback()
        raise UserError(message, field="active")
    user.active = active
    db.add(user)
    action = audit.USER_REACTIVATED if active else audit.USER_DEACTIVATED
    audit.record(db, action, actor, audit.user_target(user), None, address)
    db.commit()
    if not active:
        sessions.end_sessions(db, user.id)  # their cookies name revoked sessions from now on
    return True
