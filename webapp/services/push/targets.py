"""Which mailboxes a watcher listens to, read every few seconds with one cheap query.

A mailbox's fingerprint is everything its connection depends on (server, login, secret,
folders): when it changes, the watcher reconnects. Token refreshes are not in it: a
connection logged in with the old token stays good until that token's own expiry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from webapp.models import Mailbox

CONNECTION_COLUMNS = (
    "host",
    "port",
    "protocol",
    "username",
    "email_address",
    "auth_type",
    "password_enc",
    "allow_plaintext_login",
    "client_id",
    "token_url",
    "folders",
)
# Connections per account the providers allow (Gmail: 15), less two for fetches and checks.
ACCOUNT_LIMITS = {"gmail": 15, "outlook": 16}
DEFAULT_ACCOUNT_LIMIT = 10
RESERVED_CONNECTIONS = 2


@dataclass(frozen=True)
class Target:
    """One watchable mailbox as the watcher needs it."""

    mailbox_id: int
    fingerprint: str
    folders: tuple[str, ...]
    account: str  # host|username: the connection limit is per account
    account_limit: int
    interval_seconds: int


def folders_of(row) -> tuple[str, ...]:
    """The mailbox's chosen folders (Mailbox.folder_list of the row), each once, in order."""
    folders = Mailbox.folder_list.fget(row)
    return tuple(dict.fromkeys(f for f in folders if f)) or ("INBOX",)


def watchable(db: Session) -> list[Target]:
    """Enabled, verified, set-up IMAP mailboxes that fetch (and need no re-authorization)."""
    query = (
        select(
            Mailbox.id,
            Mailbox.provider,
            Mailbox.fetch_interval_seconds,
            *(getattr(Mailbox, name) for name in CONNECTION_COLUMNS),
        )
        .where(
            col(Mailbox.enabled).is_(True),
            col(Mailbox.fetching_enabled).is_(True),
            col(Mailbox.setup_complete).is_(True),
            Mailbox.verify_state == "ok",
            col(Mailbox.protocol).in_(["imaps", "imap"]),
            ~((Mailbox.auth_type == "oauth") & col(Mailbox.reauth_needed).is_(True)),
        )
        .order_by(col(Mailbox.id))
    )
    targets = []
    for row in db.exec(query).all():
        folders = folders_of(row)
        print_ = "\x00".join(str(getattr(row, name)) for name in CONNECTION_COLUMNS)
        user = (row.username or row.email_address).lower()
        targets.append(
            Target(
                mailbox_id=row.id,
                fingerprint=hashlib.sha256(print_.encode()).hexdigest(),
                folders=folders,
                account=f"{row.host.lower()}|{user}",
                account_limit=ACCOUNT_LIMITS.get(row.provider, DEFAULT_ACCOUNT_LIMIT)
                - RESERVED_CONNECTIONS,
                interval_seconds=row.fetch_interval_seconds,
            )
        )
    return targets


def token_expiry(db: Session, mailbox_id: int) -> datetime | None:
    return db.exec(select(Mailbox.token_expires_at).where(Mailbox.id == mailbox_id)).first()
