"""What a watcher records on its lease row, and what the mailbox page and the API show of it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from webapp.db import utcnow
from webapp.models import Mailbox, WatchLease
from webapp.services.fetching.schedule import fetch_allowed

HOUR = 3600
RING = 120  # at most this many reconnect times are kept (the last hour's)


def _update(db: Session, mailbox_id: int, holder: str, **values) -> None:
    table = WatchLease.__table__
    db.exec(
        update(table)
        .where(table.c.mailbox_id == mailbox_id, table.c.holder == holder)
        .values(**values)
    )
    db.commit()


def listening(db: Session, mailbox_id: int, holder: str, since: datetime | None) -> None:
    """Every chosen folder is in IDLE (since), or not any more (None)."""
    values = {"watching_since": since}
    if since is not None:
        values.update(idle_supported=True, error=None)
    _update(db, mailbox_id, holder, **values)


def no_idle(db: Session, mailbox_id: int, holder: str) -> None:
    """The server does not offer IDLE: the mailbox is polled, and the page says why."""
    _update(db, mailbox_id, holder, idle_supported=False, watching_since=None, error=None)


def event(db: Session, mailbox_id: int, holder: str, text: str) -> None:
    _update(db, mailbox_id, holder, last_event=text[:200], last_event_at=utcnow())


def reconnect(db: Session, mailbox_id: int, holder: str, error: str | None) -> None:
    """A connection was lost (or had to be renewed): one more in the last hour's ring."""
    ring = db.exec(select(WatchLease.reconnects).where(WatchLease.mailbox_id == mailbox_id)).first()
    now = int(time.time())
    kept = [t for t in _times(ring or "") if now - t < HOUR][-(RING - 1) :]
    ring_text = " ".join(str(t) for t in [*kept, now])
    _update(db, mailbox_id, holder, reconnects=ring_text, watching_since=None, error=error)


def limited(db: Session, mailbox_id: int, holder: str, error: str) -> None:
    """Some chosen folders have no IDLE connection (the provider's limit per account): the
    mailbox is polled at its own interval, and the page says why."""
    _update(db, mailbox_id, holder, watching_since=None, error=error)


def _times(ring: str) -> list[int]:
    return [int(t) for t in ring.split() if t.isdigit()]


@dataclass
class PushStatus:
    """Push as the mailbox page and the API show it."""

    state: str  # listening | connecting | polling | waiting | off | stopped
    text: str  # the sentence the page shows (times come separately)
    since: datetime | None = None
    last_event: str | None = None
    last_event_at: datetime | None = None
    reconnects_last_hour: int = 0
    error: str | None = None

    def as_json(self) -> dict:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "state": self.state,
            "text": self.text,
            "since": iso(self.since),
            "last_event": self.last_event,
            "last_event_at": iso(self.last_event_at),
            "reconnects_last_hour": self.reconnects_last_hour,
        }


def _polling(mailbox: Mailbox) -> str:
    minutes = mailbox.fetch_interval_minutes
    return f"Polling every {minutes} min"


def push_status(db: Session, mailbox: Mailbox) -> PushStatus:
    """Listening since …, polling (and why), or off; with the last event and the reconnects."""
    return describe(mailbox, db.get(WatchLease, mailbox.id))


def describe(mailbox: Mailbox, lease: WatchLease | None) -> PushStatus:
    """push_status from the mailbox and its lease row (None: no watcher has it)."""
    if mailbox.protocol.startswith("pop3"):
        return PushStatus("off", f"{_polling(mailbox)} (POP3 has no push)")
    if mailbox.auth_type == "oauth" and mailbox.reauth_needed:
        return PushStatus("stopped", "Push stopped: re-authorization needed")
    if not fetch_allowed(mailbox):
        return PushStatus("off", "Push: off (the mailbox does not fetch)")
    if lease is None or _aware(lease.expires_at) < utcnow():
        return PushStatus("waiting", f"{_polling(mailbox)}: no watcher is listening (start one)")
    status = PushStatus(
        "connecting",
        "Push: connecting",
        last_event=lease.last_event,
        last_event_at=lease.last_event_at,
        reconnects_last_hour=sum(1 for t in _times(lease.reconnects) if time.time() - t < HOUR),
        error=lease.error,
    )
    if lease.idle_supported is False:
        status.state, status.text = (
            "polling",
            f"{_polling(mailbox)} (this server does not offer IDLE)",
        )
    elif lease.watching_since is not None:
        status.state, status.text, status.since = (
            "listening",
            "Push: listening",
            lease.watching_since,
        )
    return status


def push_statuses(db: Session, mailboxes: list[Mailbox]) -> dict[int, PushStatus]:
    """push_status of many mailboxes with one query (the API's list)."""
    ids = [m.id for m in mailboxes]
    rows = db.exec(select(WatchLease).where(col(WatchLease.mailbox_id).in_(ids))) if ids else []
    leases = {row.mailbox_id: row for row in rows}
    return {m.id: describe(m, leases.get(m.id)) for m in mailboxes}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
