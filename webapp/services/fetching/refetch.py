"""Download again a message that was too large, after the admin raised the limit and chose Reprocess."""

from __future__ import annotations

import hashlib

from sqlmodel import Session, select

from webapp.mail.sync import Fetched, ImapFolder, Pop3Box
from webapp.models import Mailbox, RawMessage, RawMessageBody
from webapp.models import message as states
from webapp.services.fetching.leases import renew
from webapp.services.fetching.store import too_large_reason
from webapp.services.ingest.rows import process_raw


def _waiting(db: Session, mailbox_id: int) -> list[RawMessage]:
    query = select(RawMessage).where(
        RawMessage.mailbox_id == mailbox_id, RawMessage.state == states.REFETCH
    )
    return list(db.exec(query).all())


def refetch_imap(db: Session, mailbox: Mailbox, holder: str, box: ImapFolder, folder: str) -> None:
    for row in _waiting(db, mailbox.id):
        if row.folder != folder and row.folder in mailbox.folder_list:
            continue  # downloaded when its own folder is selected
        if row.folder != folder or row.uidvalidity != box.state.uidvalidity or row.uid is None:
            _give_up(
                db,
                row,
                "the server renumbered its messages since (UIDVALIDITY changed or "
                "its folder is no longer read), so this message cannot be found again by its UID",
            )
            continue
        fetched = box.fetch_one(row.uid, mailbox.max_message_bytes)
        pending = mailbox.after_fetch != "leave"
        _apply(db, mailbox, holder, row, fetched, server_pending=pending)


def refetch_pop3(
    db: Session,
    mailbox: Mailbox,
    holder: str,
    box: Pop3Box,
    listing: list[tuple[int, str, int]],
    known: dict[str, RawMessage],
) -> list[int]:
    """Download waiting rows still on the server; the message numbers whose bytes are now stored."""
    numbers = {uidl: (number, size) for number, uidl, size in listing}
    stored = []
    for row in _waiting(db, mailbox.id):
        if row.uidl not in numbers:
            _give_up(db, row, "the message is no longer on the server")
            continue
        number, size = numbers[row.uidl]
        fetched = box.retrieve(number, row.uidl, size, mailbox.max_message_bytes)
        if _apply(db, mailbox, holder, row, fetched, server_pending=False):
            stored.append(number)
    return stored


def _give_up(db: Session, row: RawMessage, reason: str) -> None:
    row.state, row.error = states.FAILED, reason
    db.add(row)
    db.commit()


def _apply(
    db: Session,
    mailbox: Mailbox,
    holder: str,
    row: RawMessage,
    fetched: Fetched | None,
    server_pending: bool,
) -> bool:
    """Store the bytes on the existing row and process it; True when the bytes are in the DB."""
    if fetched is None:
        _give_up(db, row, "the message is no longer on the server")
        return False
    if fetched.raw is None:
        row.state, row.error = (
            states.TOO_LARGE,
            too_large_reason(fetched.size, mailbox.max_message_bytes),
        )
        db.add(row)
        db.commit()
        return False
    sha = hashlib.sha256(fetched.raw).hexdigest()
    renew(db, mailbox.id, holder)
    same = db.exec(
        select(RawMessage.id).where(RawMessage.mailbox_id == mailbox.id, RawMessage.sha256 == sha)
    ).first()
    if same is not None:
        row.state, row.error = (
            states.IGNORED,
            f"the same message is stored already (raw message {same})",
        )
        db.add(row)
        db.commit()
        return True
    row.sha256, row.size, row.state, row.error, row.attempts = (
        sha,
        fetched.size,
        states.NEW,
        None,
        0,
    )
    row.server_pending = server_pending
    db.add(row)
    db.add(RawMessageBody(raw_message_id=row.id, data=fetched.raw))
    db.commit()
    process_raw(db, row.id)
    return True
