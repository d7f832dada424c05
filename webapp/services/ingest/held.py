"""Held messages: release one into a case, discard it, or expire unconfirmed ones.

Every change of state is one conditional UPDATE (… WHERE state IN …), so a person
pressing Release while the sender confirms, or the expiry sweep running meanwhile,
can never file the same message twice: whoever changes the row first decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from webapp.db import utcnow
from webapp.mail.parse import ParseError, parse_message
from webapp.models import Case, Mailbox, Message, RawMessage, RawMessageBody
from webapp.models import intake as held_states
from webapp.models import message as raw_states
from webapp.models.contact import email_key
from webapp.models.intake import HeldMessage
from webapp.services.ingest import filing
from webapp.services.ingest import process as ingest
from webapp.services.ingest.screening import original_ids, outgoing_case
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


def file_held(
    db: Session, held: HeldMessage, by: str, allowed: tuple[str, ...] = RELEASABLE
) -> Case:
    """File a held message into a case in the caller's transaction (flushed, not committed).

    The sender becomes a contact: a person or the sender has vouched for the address.
    """
    raw = db.get(RawMessage, held.raw_message_id)
    body = db.get(RawMessageBody, held.raw_message_id)
    mailbox = db.get(Mailbox, held.mailbox_id)
    if raw is None or body is None or mailbox is None:
        raise ReleaseRefused("The raw message or its mailbox is gone.")
    try:
        parsed = parse_message(body.data, ingest.limits_for(mailbox))
    except ParseError as exc:
        raise ReleaseRefused(f"The message cannot be read: {exc.reason}") from exc
    if not mailbox.allow_new_case and not _answers_a_case(db, parsed):
        raise ReleaseRefused(
            "Allow New Case is off for this mailbox and the message answers no case."
        )
    # Refusals above change nothing: the caller's transaction may go on (a confirmation reply).
    claimed = db.exec(
        update(HeldMessage)
        .where(col(HeldMessage.id) == held.id, col(HeldMessage.state).in_(allowed))
        .values(state=held_states.RELEASED, decided_at=utcnow(), decided_by=by[:320])
    ).rowcount
    db.refresh(held)
    if claimed != 1:
        raise ReleaseRefused(f"This message is {held.state} already.")
    if email_key(parsed.from_addr) not in filing.own_addresses(db):
        filing.find_contact(db, parsed, create=True)
    ignored = filing.file_message(db, mailbox, raw, parsed)
    if ignored:
        raise ReleaseRefused(f"The message still cannot become a case: {ignored}")
    db.exec(
        update(RawMessage)
        .where(col(RawMessage.id) == raw.id)
        .values(state=raw_states.DONE, error=None, processed_at=utcnow())
    )
    db.flush()
    case = case_of(db, raw.id)
    assert case is not None
    return case


def _answers_a_case(db: Session, parsed) -> bool:
    sender = email_key(parsed.from_addr)
    case = filing.thread_case(db, parsed, sender) or outgoing_case(db, original_ids(parsed))
    return case is not None


def release(db: Session, held_id: int, by: str, allowed: tuple[str, ...] = RELEASABLE) -> Case:
    """Release a held message into a case and commit; raise ReleaseRefused when it cannot be."""
    return _committed(db, held_id, lambda held: file_held(db, held, by, allowed))


def confirm_sender(db: Session, held_id: int, by: str) -> Case:
    """The sender confirmed (link): release this message and the sender's other ones; commits."""
    return _committed(db, held_id, lambda held: file_confirmed(db, held, by))


def file_confirmed(db: Session, held: HeldMessage, by: str) -> Case:
    """File a confirmed message, then the same sender's other messages awaiting confirmation
    (they wrote twice before confirming once); flushed, not committed."""
    case = file_held(db, held, by, (held_states.HELD,))
    others = db.exec(
        select(HeldMessage)
        .where(
            HeldMessage.sender_key == held.sender_key,
            HeldMessage.reason == held_states.CONFIRMATION,
            HeldMessage.state == held_states.HELD,
            col(HeldMessage.id) != held.id,
        )
        .order_by(col(HeldMessage.id))
        .limit(50)
    ).all()
    for other in others:
        try:
            file_held(db, other, by, (held_states.HELD,))
        except ReleaseRefused:
            continue  # refused before changing anything: it stays held for a person
    return case


def _committed(db: Session, held_id: int, work) -> Case:
    for attempt in (1, 2):
        held = db.get(HeldMessage, held_id)
        if held is None:
            raise ReleaseRefused("This message no longer exists.")
        try:
            case = work(held)
            db.commit()
            return case
        except ReleaseRefused:
            db.rollback()
            raise
        except IntegrityError:
            # A concurrent writer made the same contact, or filed this message: start again
            # from what is committed now.
            db.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


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
        return parse_message(body.data, ingest.limits_for(mailbox)).text[:limit]
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
