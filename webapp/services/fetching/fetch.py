"""Fetch a mailbox: take its lease, store raw bytes first (with the cursor, per batch), then process.

A worker killed at any instant loses nothing and duplicates nothing: every batch
commits its raw rows and the cursor together, processing is keyed by the raw row,
and the next run processes what is left, then reads on from the cursor.
The scheduling side (Fetch now, Continue, the scheduler, the sweep) is in
services/fetching/schedule.py; status and log in services/fetching/status.py.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy import update
from sqlmodel import Session, col, select

from webapp import crypto
from webapp.db import new_session
from webapp.mail.errors import MailError
from webapp.mail.sync import BATCH_SIZE, ImapFolder, Pop3Box
from webapp.models import Mailbox, RawMessage
from webapp.services import oauth
from webapp.services.fetching import leases, store
from webapp.services.fetching.leases import LeaseKeeper, LeaseLost
from webapp.services.fetching.refetch import refetch_imap, refetch_pop3
from webapp.services.fetching.run import Progress, RunContext, close_run, finish, start_run
from webapp.services.fetching.schedule import fetch_allowed
from webapp.services.fetching.verify import connect_with_refresh, explained
from webapp.services.ingest import batch as ingest

log = logging.getLogger(__name__)


def batch_size() -> int:
    """UIDs (or POP3 messages) per batch; MAILCHANNEL_FETCH_BATCH_SIZE makes tests take small steps."""
    return int(os.environ.get("MAILCHANNEL_FETCH_BATCH_SIZE") or BATCH_SIZE)


def fetch_mailbox(
    database_url: str, mailbox_id: int, ca_bundle: str | None, progress: Progress | None = None
) -> dict:
    """One fetch job: process leftovers, then fetch new mail (if the mailbox fetches at all)."""
    holder = leases.new_holder()
    with new_session(database_url) as db:
        if db.get(Mailbox, mailbox_id) is None:
            return {"state": "gone"}
        db.exec(update(Mailbox).where(col(Mailbox.id) == mailbox_id).values(fetch_queued_at=None))
        db.commit()
        if not leases.acquire(db, mailbox_id, holder):
            return {"state": "busy"}
        try:
            with LeaseKeeper(database_url, mailbox_id, holder) as keeper:
                return _with_lease(db, mailbox_id, holder, keeper, ca_bundle, progress)
        finally:
            db.rollback()
            leases.release(db, mailbox_id, holder)


def _with_lease(
    db: Session,
    mailbox_id: int,
    holder: str,
    keeper: LeaseKeeper,
    ca_bundle: str | None,
    progress: Progress | None,
) -> dict:
    leftovers = ingest.process_pending(db, mailbox_id, keeper.check)
    mailbox = db.get(Mailbox, mailbox_id)
    if mailbox is None or not fetch_allowed(mailbox):
        return {"state": "skipped", "processed": sum(leftovers.values())}
    ctx = RunContext(
        db,
        mailbox,
        mailbox_id,
        start_run(db, mailbox, holder),
        holder,
        keeper,
        progress,
        backlog=not mailbox.initial_fetch_done,
    )
    try:
        fetch = _fetch_pop3 if mailbox.protocol.startswith("pop3") else _fetch_imap
        # OAuth: a token refreshed before it expires, and once more if the server rejects it.
        with ctx.ahead:  # the parsing helper (if one started) ends with the fetch
            more = connect_with_refresh(
                db, mailbox, ca_bundle, lambda settings: fetch(ctx, settings)
            )
    except oauth.OAuthFailed as exc:
        db.rollback()
        log.info("fetch of mailbox %s: OAuth %s", mailbox_id, exc.kind)
        return finish(
            ctx,
            (
                exc.kind,
                exc.message,
                "Click “Get Authorization Code” on the mailbox page to authorize again."
                if exc.kind == "reauth_needed"
                else "The next fetch tries again.",
            ),
        )
    except MailError as exc:
        db.rollback()
        log.info("fetch of mailbox %s failed: %s", mailbox_id, exc.kind)
        return finish(ctx, explained(mailbox, exc, on_setup=False))
    except crypto.SecretUnreadable as exc:
        db.rollback()
        return finish(
            ctx,
            (
                "secret",
                str(exc),
                "Set ENCRYPTION_KEY to the key used when the mailbox "
                "was saved, or enter the password again and Save.",
            ),
        )
    except LeaseLost as exc:
        db.rollback()
        log.warning("fetch of mailbox %s stopped: %s", mailbox_id, exc)
        return {
            **close_run(ctx, "interrupted", ("lease", "Another worker took over this fetch.", "")),
            "state": "lost",
        }
    except Exception as exc:
        db.rollback()
        finish(
            ctx,
            (
                "internal",
                f"The fetch stopped on an unexpected {type(exc).__name__}.",
                "Messages stored so far are kept and the next fetch resumes; if this keeps "
                "happening, the worker's log has the details.",
            ),
        )
        raise
    return finish(ctx, None, more)


def _fetch_imap(ctx: RunContext, settings) -> bool:
    db, mailbox = ctx.db, ctx.mailbox
    folder = mailbox.folder or "INBOX"
    box = ImapFolder(settings, folder, writable=mailbox.after_fetch != "leave")
    try:
        uidvalidity = box.state.uidvalidity
        cursor, reset = store.cursor_for(db, ctx.mailbox_id, folder, uidvalidity)
        if reset:
            ctx.notes = (
                "UIDVALIDITY changed: the folder was listed again; known messages were skipped."
            )
        refetch_imap(db, mailbox, ctx.holder, box, folder)
        _pending_server_actions(ctx, box, folder, uidvalidity)
        more = False
        if box.has_new(cursor.last_uid):
            uids = box.uids_after(cursor.last_uid)
            ctx.set_total(len(uids))
            for chunk, batch in box.batches(uids, mailbox.max_message_bytes, batch_size()):
                ctx.keeper.check()
                ingest.parse_early(ctx.ahead, mailbox, batch)
                stored = store.store_batch(
                    db,
                    mailbox,
                    ctx.run_id,
                    ctx.holder,
                    batch,
                    folder=folder,
                    uidvalidity=uidvalidity,
                    cursor_uid=chunk[-1],
                    backlog=ctx.backlog,
                    listed=len(chunk),
                )
                _server_actions(ctx, box, folder, uidvalidity, [f.uid for f in stored.committed])
                ingest.process_ids(db, stored.new_ids, ahead=ctx.ahead, bodies=stored.bodies)
                ctx.ahead.forget()
                if ctx.after_batch():
                    more = True
                    break
        if not more and box.state.uidnext:
            store.advance_to(db, cursor, box.state.uidnext - 1)
    finally:
        ctx.fetch_commands = box.stats.fetch_commands
        box.close()
    return more


def _server_actions(
    ctx: RunContext, box: ImapFolder, folder: str, uidvalidity: int, uids: list[int]
) -> None:
    """After commit only: mark read, move or delete on the server, then clear the pending flag."""
    mailbox = ctx.mailbox
    action = mailbox.after_fetch
    if not uids or action == "leave":
        return
    if action == "delete":
        box.delete(uids)
    elif action == "move":
        box.move(uids, mailbox.move_to_folder)
    else:
        box.mark_seen(uids)
    ctx.db.exec(
        update(RawMessage)
        .where(
            col(RawMessage.mailbox_id) == mailbox.id,
            col(RawMessage.folder) == folder,
            col(RawMessage.uidvalidity) == uidvalidity,
            col(RawMessage.uid).in_(uids),
        )
        .values(server_pending=False)
    )
    ctx.db.commit()


def _pending_server_actions(
    ctx: RunContext, box: ImapFolder, folder: str, uidvalidity: int
) -> None:
    """Finish mark-read / move / delete of messages committed before a crash (harmless if done)."""
    db, mailbox = ctx.db, ctx.mailbox
    where = [col(RawMessage.mailbox_id) == mailbox.id, col(RawMessage.server_pending).is_(True)]
    rows = db.exec(
        select(RawMessage.uid, RawMessage.uidvalidity, RawMessage.folder).where(*where)
    ).all()
    current = [uid for uid, uv, f in rows if uv == uidvalidity and f == folder and uid is not None]
    if current and mailbox.after_fetch != "leave":
        _server_actions(ctx, box, folder, uidvalidity, current)
    if rows:  # old UIDVALIDITY, other folder or option turned off: nothing left to do there
        db.exec(update(RawMessage).where(*where).values(server_pending=False))
        db.commit()


def _fetch_pop3(ctx: RunContext, settings) -> bool:
    db, mailbox = ctx.db, ctx.mailbox
    box = Pop3Box(settings)
    quit_ok = False
    try:
        listing = box.listing()
        known = store.known_uidls(db, mailbox.id, [uidl for _, uidl, _ in listing])
        # Delete what is stored, also when a crash before QUIT left it on the server.
        to_delete = [n for n, u, _ in listing if u in known and known[u].sha256 is not None]
        to_delete += refetch_pop3(db, mailbox, ctx.holder, box, listing, known)
        new = [item for item in listing if item[1] not in known]
        ctx.set_total(len(new))
        more = False
        for start in range(0, len(new), batch_size()):
            ctx.keeper.check()
            chunk = new[start : start + batch_size()]
            batch = [box.retrieve(n, u, s, mailbox.max_message_bytes) for n, u, s in chunk]
            ingest.parse_early(ctx.ahead, mailbox, batch)
            stored = store.store_batch(
                db, mailbox, ctx.run_id, ctx.holder, batch, backlog=ctx.backlog
            )
            committed = {f.uidl for f in stored.committed}
            to_delete += [n for n, u, _ in chunk if u in committed]
            ingest.process_ids(db, stored.new_ids, ahead=ctx.ahead, bodies=stored.bodies)
            ctx.ahead.forget()
            if ctx.after_batch():
                more = True
                break
        if mailbox.delete_after_fetch and to_delete:
            box.delete(sorted(set(to_delete)))
        box.quit()  # the server applies the DELEs now, after everything was committed
        quit_ok = True
    finally:
        ctx.fetch_commands = box.stats.fetch_commands
        if not quit_ok:
            box.close()
    return more
