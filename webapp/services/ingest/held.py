"""Held and filtered messages: their rows, their changes of state, and the held pages.

Screening decides that a message stops (ingest/screening.py); this module writes the
HeldMessage row. Releasing one into a case is routing (ingest/route.py, committed by
ingest/release.py). Every change of state is one conditional UPDATE (… WHERE state IN …),
so a person pressing Release while the sender confirms, or the expiry sweep running
meanwhile, can never file the same message twice: whoever changes the row first decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from webapp.db import utcnow
from webapp.mail.parse import ParsedMessage, ParseError, parse_message
from webapp.models import Case, Mailbox, Message, RawMessage, RawMessageBody
from webapp.models import intake as held_states
from webapp.models import message as raw_states
from webapp.models.intake import HeldMessage
from webapp.services.ingest.parse_ahead import limits_for
from webapp.services.ingest.screening import Verdict
from webapp.services.outgoing import confirm

RELEASABLE = (held_states.HELD, held_states.EXPIRED, held_states.DISCARDED)
DISCARDABLE = (held_states.HELD, held_states.EXPIRED)
PER_PAGE = 50


class ReleaseRefused(Exception):
    """The held message cannot be released (already released, gone, or unusable)."""


def case_of(db: Session, raw_message_id: int) -> Case | None:
    """The case a (released) message was filed into."""
    message = db.exec(select(Message).where(Message.raw_message_id == raw_message_id)).first()
    return db.get(Case, message.case_id) if message is not None else None


def record(
    db: Session,
    existing: HeldMessage | None,
    mailbox: Mailbox,
    raw: RawMessage,
    parsed: ParsedMessage,
    verdict: Verdict,
) -> HeldMessage:
    """Record a held or filtered message, as screening stopped it (flushed, not committed)."""
    stop = verdict.stop
    held = existing or HeldMessage(raw_message_id=raw.id, mailbox_id=mailbox.id)
    held.sender = parsed.from_addr[:320]
    held.sender_key = verdict.sender[:320]
    held.sender_name = (parsed.from_name or "")[:200]
    held.subject = (parsed.subject or "")[:1000]
    held.reason, held.state, held.detail = stop.reason, stop.state, stop.detail
    held.automated = verdict.automated[:200] if verdict.automated else None
    held.backlog = raw.backlog
    held.decided_at, held.decided_by = None, ""
    db.add(held)
    db.flush()
    return held


def note_mail_decision(db: Session, held: HeldMessage, decision: str) -> None:
    """Keep what was decided about an automatic mail (sent, or why not) on the row."""
    held.mail_decision = decision[:500]
    db.add(held)


def released_on_reprocess(db: Session, held: HeldMessage) -> None:
    """Reprocessed after the settings changed, the message goes through now."""
    held.state = held_states.RELEASED
    held.decided_at, held.decided_by = utcnow(), "reprocess"
    db.add(held)


def claim(db: Session, held: HeldMessage, by: str, allowed: tuple[str, ...]) -> None:
    """Mark the message released if it is in one of the `allowed` states; ReleaseRefused if
    someone else changed it first (the release sweep, a person, the sender)."""
    claimed = db.exec(
        update(HeldMessage)
        .where(col(HeldMessage.id) == held.id, col(HeldMessage.state).in_(allowed))
        .values(state=held_states.RELEASED, decided_at=utcnow(), decided_by=by[:320])
    ).rowcount
    db.refresh(held)
    if claimed != 1:
        raise ReleaseRefused(f"This message is {held.state} already.")


def senders_other_holds(db: Session, held: HeldMessage, limit: int = 50) -> list[HeldMessage]:
    """The same sender's other messages awaiting confirmation (they wrote twice before
    confirming once), oldest first."""
    return list(
        db.exec(
            select(HeldMessage)
            .where(
                HeldMessage.sender_key == held.sender_key,
                HeldMessage.reason == held_states.CONFIRMATION,
                HeldMessage.state == held_states.HELD,
                col(HeldMessage.id) != held.id,
            )
            .order_by(col(HeldMessage.id))
            .limit(limit)
        ).all()
    )


def discard(db: Session, held_id: int, by: str) -> bool:
    """Discard a held message (it stays in the log); False if it was not held any more."""
    now = utcnow()
    changed = _move(db, held_id, DISCARDABLE, held_states.DISCARDED, by, now)
    if changed:
        _note_on_raw(db, held_id, f"held, then discarded by {by}")
    db.commit()
    return changed


def expire_due(db: Session, now: datetime | None = None, batch: int = 500) -> int:
    """Mark confirmation holds whose time ran out as expired; returns how many."""
    now = now or utcnow()
    due = db.exec(
        select(HeldMessage.id)
        .where(
            HeldMessage.state == held_states.HELD,
            HeldMessage.reason == held_states.CONFIRMATION,
            col(HeldMessage.expires_at).is_not(None),
            col(HeldMessage.expires_at) <= now,
        )
        .order_by(col(HeldMessage.id))
        .limit(batch)
    ).all()
    count = 0
    for held_id in due:
        if _move(db, held_id, (held_states.HELD,), held_states.EXPIRED, "expiry", now):
            _note_on_raw(
                db, held_id, "held for confirmation; the sender never confirmed, so it expired"
            )
            count += 1
    db.commit()
    return count


def _move(
    db: Session, held_id: int, from_states: tuple[str, ...], to_state: str, by: str, now
) -> bool:
    changed = db.exec(
        update(HeldMessage)
        .where(col(HeldMessage.id) == held_id, col(HeldMessage.state).in_(from_states))
        .values(state=to_state, decided_at=now, decided_by=by[:320])
    ).rowcount
    return changed == 1


def _note_on_raw(db: Session, held_id: int, note: str) -> None:
    """The fetch log shows the raw message's error: keep it saying what became of it."""
    raw_id = db.exec(select(HeldMessage.raw_message_id).where(HeldMessage.id == held_id)).first()
    if raw_id is not None:
        db.exec(
            update(RawMessage)
            .where(col(RawMessage.id) == raw_id, RawMessage.state == raw_states.IGNORED)
            .values(error=note)
        )


# -- pages --------------------------------------------------------------------------


@dataclass
class HeldPage:
    rows: list[HeldMessage]
    total: int
    page: int
    pages: int


def list_held(
    db: Session,
    states: tuple[str, ...],
    mailbox_id: int | None = None,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> HeldPage:
    """Held or filtered messages in these states, newest first."""
    where = [col(HeldMessage.state).in_(states)]
    if mailbox_id:
        where.append(HeldMessage.mailbox_id == mailbox_id)
    total = int(db.exec(select(func.count()).select_from(HeldMessage).where(*where)).one())
    pages = max(1, math.ceil(total / per_page))
    page = max(page, 1)
    rows = db.exec(
        select(HeldMessage)
        .where(*where)
        .order_by(col(HeldMessage.id).desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return HeldPage(list(rows), total, page, pages)


def counts(db: Session, mailbox_id: int | None = None) -> dict[str, int]:
    """How many held messages are in each state (the tabs of the held page)."""
    query = select(HeldMessage.state, func.count()).group_by(HeldMessage.state)
    if mailbox_id:
        query = query.where(HeldMessage.mailbox_id == mailbox_id)
    rows = db.exec(query).all()
    return {state: int(n) for state, n in rows}


def preview(db: Session, held: HeldMessage, limit: int = 20000) -> str:
    """The message's text, for a person deciding whether to release it."""
    body = db.get(RawMessageBody, held.raw_message_id)
    mailbox = db.get(Mailbox, held.mailbox_id)
    if body is None or mailbox is None:
        return ""
    try:
        return parse_message(body.data, limits_for(mailbox)).text[:limit]
    except ParseError as exc:
        return f"(the message cannot be read: {exc.reason})"


def from_token(db: Session, token: str, secret_key) -> HeldMessage:
    """The held message a confirmation link names; ConfirmationInvalid or ConfirmationExpired.

    The signature is checked first (a forged link learns nothing), then the age against
    the mailbox's own Confirmation time, then the row's expiry (the sweep may not have
    run yet).
    """
    held_id = confirm.read_token(token, secret_key, timedelta(days=3650))
    held = db.get(HeldMessage, held_id)
    if held is None or held.reason != held_states.CONFIRMATION or held.mail_sent_at is None:
        raise confirm.ConfirmationInvalid("This confirmation link is not valid.")
    mailbox = db.get(Mailbox, held.mailbox_id)
    hours = max(mailbox.confirmation_hours if mailbox else 72, 1)
    confirm.read_token(token, secret_key, timedelta(hours=hours))
    if _issued_at(token, secret_key) < _aware(held.mail_sent_at).timestamp() - 2:
        # Older than this row's confirmation mail: made for a row that had this id before.
        raise confirm.ConfirmationInvalid("This confirmation link is not valid.")
    expires = _aware(held.expires_at)
    if held.state == held_states.EXPIRED or (
        held.state == held_states.HELD and expires is not None and expires <= utcnow()
    ):
        raise confirm.ConfirmationExpired("This confirmation link has expired.")
    return held


def _issued_at(token: str, secret_key) -> int:
    """When a (genuine) token was signed, in Unix seconds."""
    serializer = URLSafeTimedSerializer(secret_key, salt=confirm.SALT)
    _, issued = serializer.loads(token, return_timestamp=True)
    return int(issued.timestamp())


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite gives stored times back naive (they are UTC)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment
