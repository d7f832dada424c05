"""Store first: commit fetched bytes, the cursor and the run's progress in one transaction.

Nothing is parsed here. Each raw row is unique per server position ((mailbox,
folder, uidvalidity, uid) or (mailbox, uidl)) and per content ((mailbox, sha256)),
and rows are inserted with ON CONFLICT DO NOTHING, so storing the same message
twice (a rerun after SIGKILL, a UIDVALIDITY change, a second worker) adds nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import delete, insert, update
from sqlmodel import Session, col, select

from webapp.db import insert_ignore, utcnow
from webapp.mail.headers import decode_header_value
from webapp.mail.sync import Fetched
from webapp.models import FetchCursor, FetchRun, Mailbox, RawMessage, RawMessageBody
from webapp.models import message as states
from webapp.services.fetching.leases import renew

log = logging.getLogger(__name__)

_HEADER_PEEK = 64 * 1024
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


@dataclass
class Stored:
    """What one batch left in the database."""

    new_ids: list[int] = field(default_factory=list)  # rows to process, in fetch order
    bodies: dict[int, bytes] = field(default_factory=dict)  # their raw bytes, by row id
    committed: list[Fetched] = field(default_factory=list)  # bytes are in the DB (new or known)
    inserted: int = 0  # new raw rows, too-large ones included, skipped ones not
    skipped: int = 0  # new rows of messages set aside (sent before Fetch mail since)


def summary(data: bytes) -> tuple[str | None, str, str]:
    """(Message-ID, From, Subject) read leniently from the header block, without parsing MIME."""
    try:
        return _summary(data)
    except Exception:  # only a label for the fetch log: never a reason to stop storing
        log.exception("could not read the summary headers of a fetched message")
        return None, "", ""


def _summary(data: bytes) -> tuple[str | None, str, str]:
    head = data[:_HEADER_PEEK]
    for separator in (b"\r\n\r\n", b"\n\n", b"\r\r"):
        if separator in head:
            head = head.split(separator, 1)[0]
            break
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n\r\n")
    raw_values: dict[str, str] = {}
    for name, raw in parsed.raw_items():  # raw text: 8-bit bytes kept as surrogates
        raw_values.setdefault(name.lower(), raw)

    def value(name: str, limit: int) -> str:
        raw = raw_values.get(name.lower())
        return decode_header_value(raw)[:limit] if raw is not None else ""

    found = _MESSAGE_ID.search(value("Message-ID", 998))
    return (found.group(0) if found else None), value("From", 320), value("Subject", 300)


def too_large_reason(size: int, limit: int) -> str:
    return (
        f"message is {size / 1048576:.1f} MB, over this mailbox's {limit / 1048576:.1f} MB limit; "
        "left on the server and not downloaded (raise the limit, then Reprocess)"
    )


def store_batch(
    db: Session,
    mailbox: Mailbox,
    run_id: int,
    holder: str,
    batch: list[Fetched],
    *,
    folder: str = "",
    uidvalidity: int | None = None,
    cursor_uid: int | None = None,
    backlog: bool = False,
    listed: int | None = None,
) -> Stored:
    """Commit a batch of fetched messages; raise LeaseLost (nothing committed) if not ours.

    `listed` is how many listed messages the batch covers (progress), default len(batch).
    """
    out = Stored()
    try:
        renew(db, mailbox.id, holder)  # first statement: takes SQLite's write lock at once
        rows = [
            (fetched, values)
            for fetched in batch
            if (values := _values(db, mailbox, run_id, fetched, folder, uidvalidity, backlog))
        ]
        new_ids = _insert_rows(db, [values for _, values in rows])
        for fetched, values in rows:
            new_id = new_ids.get((fetched.uid, fetched.uidl))
            if fetched.skipped:
                out.skipped += new_id is not None
                continue
            out.inserted += new_id is not None
            if fetched.raw is None:
                continue
            if new_id is not None:
                out.new_ids.append(new_id)
                out.bodies[new_id] = fetched.raw
                out.committed.append(fetched)
            elif _bytes_known(db, mailbox.id, values["sha256"]):
                out.committed.append(fetched)  # the same bytes are stored already: deduplicated
        if out.bodies:  # one multi-row INSERT (executemany) for the batch's bytes
            bodies = [{"raw_message_id": i, "data": data} for i, data in out.bodies.items()]
            db.exec(insert(RawMessageBody.__table__), params=bodies)
        if cursor_uid is not None:
            _advance_cursor(db, mailbox.id, folder, uidvalidity, cursor_uid)
        progress = len(batch) if listed is None else listed
        db.exec(
            update(FetchRun)
            .where(col(FetchRun.id) == run_id)
            .values(
                done=FetchRun.done + progress, new_messages=FetchRun.new_messages + out.inserted
            )
        )
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return out


def _values(
    db: Session,
    mailbox: Mailbox,
    run_id: int,
    fetched: Fetched,
    folder: str,
    uidvalidity: int | None,
    backlog: bool,
) -> dict | None:
    """The raw row of one fetched message; None for a too-large message we hold already."""
    message_id, sender, subject = summary(
        fetched.raw if fetched.raw is not None else fetched.headers
    )
    values = dict(
        mailbox_id=mailbox.id,
        folder=folder,
        uidvalidity=uidvalidity if fetched.uid is not None else None,
        uid=fetched.uid,
        uidl=fetched.uidl,
        size=fetched.size,
        message_id=message_id,
        header_from=sender,
        header_subject=subject,
        backlog=backlog,
        fetch_run_id=run_id,
        fetched_at=utcnow(),
        attempts=0,
        server_pending=False,
    )
    if fetched.skipped:
        values.update(state=states.SKIPPED, sha256=None, error=fetched.skipped)
    elif fetched.raw is None:
        if _known_too_large(db, mailbox.id, message_id, fetched.size):
            return None
        values.update(
            state=states.TOO_LARGE,
            sha256=None,
            error=too_large_reason(fetched.size, mailbox.max_message_bytes),
        )
    else:
        sha = fetched.sha256
        pending = fetched.uid is not None and mailbox.after_fetch != "leave"
        values.update(state=states.NEW, sha256=sha, error=None, server_pending=pending)
    return values


def _insert_rows(db: Session, rows: list[dict]) -> dict[tuple, int]:
    """Insert a batch's raw rows in one statement (ON CONFLICT DO NOTHING); the ids of the
    new ones by server position (uid, uidl): a row already held returns nothing."""
    if not rows:
        return {}
    table = RawMessage.__table__
    returning = insert_ignore(db, table).returning(table.c.id, table.c.uid, table.c.uidl)
    result = db.exec(returning, params=rows)
    return {(uid, uidl): new_id for new_id, uid, uidl in result.all()}


def _known_too_large(db: Session, mailbox_id: int, message_id: str | None, size: int) -> bool:
    """A too-large message seen again under a new UIDVALIDITY: no second metadata row."""
    if not message_id:
        return False
    query = select(RawMessage.id).where(
        RawMessage.mailbox_id == mailbox_id,
        RawMessage.message_id == message_id,
        RawMessage.size == size,
        RawMessage.state == states.TOO_LARGE,
    )
    return db.exec(query).first() is not None


def _bytes_known(db: Session, mailbox_id: int, sha256: str) -> bool:
    query = select(RawMessage.id).where(
        RawMessage.mailbox_id == mailbox_id, RawMessage.sha256 == sha256
    )
    return db.exec(query).first() is not None


def _advance_cursor(
    db: Session, mailbox_id: int, folder: str, uidvalidity: int | None, uid: int
) -> None:
    db.exec(
        update(FetchCursor)
        .where(
            col(FetchCursor.mailbox_id) == mailbox_id,
            col(FetchCursor.folder) == folder,
            col(FetchCursor.uidvalidity) == uidvalidity,
            col(FetchCursor.last_uid) < uid,
        )
        .values(last_uid=uid, updated_at=utcnow())
    )


def has_cursors(db: Session, mailbox_id: int) -> bool:
    """True once some folder of the mailbox was read by IMAP."""
    query = select(FetchCursor.id).where(FetchCursor.mailbox_id == mailbox_id).limit(1)
    return db.exec(query).first() is not None


def cursor_for(
    db: Session, mailbox_id: int, folder: str, uidvalidity: int, backlog_until: int = 0
) -> tuple[FetchCursor, bool]:
    """The folder's cursor, created or reset for this UIDVALIDITY; True when it was reset.

    A new cursor marks UIDs up to backlog_until as backlog (a folder chosen after the
    first fetch). On a UIDVALIDITY change the old raw rows stay; the folder is listed
    again from UID 1 and the content key (mailbox, sha256) drops what we already hold.
    """
    cursor = db.exec(
        select(FetchCursor).where(
            FetchCursor.mailbox_id == mailbox_id, FetchCursor.folder == folder
        )
    ).first()
    if cursor is None:
        db.exec(
            insert_ignore(db, FetchCursor.__table__).values(
                mailbox_id=mailbox_id,
                folder=folder,
                uidvalidity=uidvalidity,
                last_uid=0,
                backlog_until=max(backlog_until, 0),
                updated_at=utcnow(),
            )
        )
        db.commit()
        return cursor_for(db, mailbox_id, folder, uidvalidity)
    if cursor.uidvalidity == uidvalidity:
        return cursor, False
    cursor.uidvalidity, cursor.last_uid, cursor.updated_at = uidvalidity, 0, utcnow()
    cursor.backlog_until = 0
    db.add(cursor)
    db.commit()
    return cursor, True


def advance_to(db: Session, cursor: FetchCursor, uid: int) -> None:
    """Move the cursor over UIDs that no longer exist (nothing below UIDNEXT is left to read)."""
    _advance_cursor(db, cursor.mailbox_id, cursor.folder, cursor.uidvalidity, uid)
    db.commit()


def known_uidls(db: Session, mailbox_id: int, uidls: list[str]) -> dict[str, RawMessage]:
    """The raw rows we hold for these POP3 UIDLs (queried in chunks)."""
    found: dict[str, RawMessage] = {}
    for start in range(0, len(uidls), 500):
        chunk = uidls[start : start + 500]
        rows = db.exec(
            select(RawMessage).where(
                RawMessage.mailbox_id == mailbox_id, col(RawMessage.uidl).in_(chunk)
            )
        ).all()
        found.update({row.uidl: row for row in rows})
    return found


def forget_positions(db: Session, mailbox_id: int) -> None:
    """The mailbox now reads another account or folder: old UIDs and UIDLs mean nothing there.

    The rows and their bytes stay (and keep deduplicating by content); only their
    server positions and the cursors go, so the new account's UID 1 is not taken for
    the old one's. Not committed: part of the caller's change.
    """
    db.exec(delete(FetchCursor).where(col(FetchCursor.mailbox_id) == mailbox_id))
    db.exec(
        update(RawMessage)
        .where(col(RawMessage.mailbox_id) == mailbox_id)
        .values(uid=None, uidvalidity=None, uidl=None, server_pending=False)
    )
