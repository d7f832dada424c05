"""Fetch a mailbox: take its lease, store raw bytes first (with the cursor, per batch), then process.

A worker killed at any instant loses nothing and duplicates nothing: every batch
commits its raw rows and the cursor together, processing is keyed by the raw row,
and the next run processes what is left, then reads on from the cursor.
The connection is single-flight; filing what it stored may be shared with idle
workers (services/ingest/shared.py, claims.py). The scheduling side (Fetch now, Continue, the scheduler, the sweep) is in
services/fetching/schedule.py; status and log in services/fetching/status.py.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy import update
from sqlmodel import Session, col

from webapp import crypto
from webapp.db import new_session
from webapp.mail.errors import FolderNotFound, MailError
from webapp.mail.folders import sent_before, since_text
from webapp.mail.sync import BATCH_SIZE, Fetched, ImapFolder, Pop3Box
from webapp.models import Mailbox
from webapp.services import oauth
from webapp.services.fetching import leases, store
from webapp.services.fetching.after_fetch import (
    forget_unread_folders,
    pending_server_actions,
    server_actions,
)
from webapp.services.fetching.leases import LeaseKeeper, LeaseLost
from webapp.services.fetching.refetch import refetch_imap, refetch_pop3
from webapp.services.fetching.run import Progress, RunContext, close_run, finish, start_run
from webapp.services.fetching.schedule import fetch_allowed
from webapp.services.fetching.verify import connect_with_refresh, explained
from webapp.services.ingest import batch as ingest
from webapp.services.ingest import shared
from webapp.yielding import give_way

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
    leftovers = ingest.process_pending(db, mailbox_id, keeper.check, holder=holder, fetch=True)
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
            shared.drain(db, mailbox_id, holder, keeper.check, ctx.ahead)  # others' claims too
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
    """Every chosen folder in turn, in one session; a missing folder does not stop the others."""
    mailbox = ctx.mailbox
    box = ImapFolder(settings, None, writable=mailbox.after_fetch != "leave")
    missing: list[FolderNotFound] = []
    more = False
    forget_unread_folders(ctx)
    try:
        for folder in mailbox.folder_list:
            try:
                box.select(folder)
            except FolderNotFound as exc:
                missing.append(exc)
                continue
            if _fetch_folder(ctx, box, folder):
                more = True
                break
    finally:
        ctx.fetch_commands = box.stats.fetch_commands
        box.close()
    if missing and not more:
        others = len(missing) < len(mailbox.folder_list)
        raise FolderNotFound(
            " ".join(exc.message for exc in missing)
            + (" The other folders were fetched." if others else ""),
            missing[0].advice,
        )
    return more


def _fetch_folder(ctx: RunContext, box: ImapFolder, folder: str) -> bool:
    """Store what is new in the selected folder; True when the run's time is up."""
    db, mailbox = ctx.db, ctx.mailbox
    uidvalidity = box.state.uidvalidity
    # Added to Folders after the first fetch, while other folders were read already; a
    # mailbox with no cursor at all (first read by IMAP) goes by initial_fetch_done alone.
    added_later = (
        mailbox.initial_fetch_done and box.state.uidnext and store.has_cursors(db, ctx.mailbox_id)
    )
    cursor, reset = store.cursor_for(
        db, ctx.mailbox_id, folder, uidvalidity, (box.state.uidnext - 1) if added_later else 0
    )
    if reset:
        ctx.note(
            f"UIDVALIDITY changed in {folder}: the folder was listed again; "
            "known messages were skipped."
        )
    refetch_imap(db, mailbox, ctx.holder, box, folder)
    pending_server_actions(ctx, box, folder, uidvalidity)
    if box.has_new(cursor.last_uid):
        uids = box.uids_after(cursor.last_uid, mailbox.fetch_since)
        ctx.add_total(len(uids))
        # A folder chosen after the first fetch: what it held then is backlog (no acknowledgement).
        old = [uid for uid in uids if uid <= cursor.backlog_until]
        parts = [(old, True), ([uid for uid in uids if uid > cursor.backlog_until], ctx.backlog)]
        for part, backlog in parts:
            if part and _store_uids(ctx, box, folder, uidvalidity, part, backlog):
                return True
    if box.state.uidnext:  # also past UIDs expunged meanwhile or received before the date
        store.advance_to(db, cursor, box.state.uidnext - 1)
    return False


def _store_uids(
    ctx: RunContext, box: ImapFolder, folder: str, uidvalidity: int, uids: list, backlog: bool
) -> bool:
    """Fetch, store and process these UIDs batch by batch; True when the run's time is up."""
    db, mailbox = ctx.db, ctx.mailbox
    for chunk, batch in box.batches(uids, mailbox.max_message_bytes, batch_size()):
        ctx.keeper.check()
        give_way()
        _parse_early(ctx, batch)
        stored = store.store_batch(
            db,
            mailbox,
            ctx.run_id,
            ctx.holder,
            batch,
            folder=folder,
            uidvalidity=uidvalidity,
            cursor_uid=chunk[-1],
            backlog=backlog,
            listed=len(chunk),
        )
        server_actions(ctx, box, folder, uidvalidity, [f.uid for f in stored.committed])
        _file_share(ctx, stored)
        if ctx.after_batch():
            return True
    return False


def _parse_early(ctx: RunContext, batch: list[Fetched]) -> None:
    """Alone, the fetch files all it stores: its parsing helper starts on a batch while it
    is stored. Shared, idle workers file the batches: parsing them here would parse them
    twice, so the helper parses only the rows this job claims when it drains."""
    if not shared.can_share(ctx.db, ctx.mailbox_id):
        ingest.parse_early(ctx.ahead, ctx.mailbox, batch)


def _file_share(ctx: RunContext, stored: store.Stored) -> None:
    """File a stored batch: alone, all of it now; shared, nothing: it is offered to idle
    workers and the fetch goes on reading, then files what is left when it drains.

    Why not a share of each batch as well: a reply waits for the message it answers
    (ingest/claims.py), and most replies answer recent mail, so two claimants filing
    neighbouring chunks take turns. Measured with 5,000 messages on PostgreSQL (bench
    --shared-filing, 2 CPUs under load): the fetch filing what lay two batches behind
    made the two workers slower than one (141 against 264 msgs/s); the fetch only
    reading, 188 against 178 (services/ingest/shared.py)."""
    if stored.new_ids and shared.offer(ctx.db, ctx.mailbox_id):
        return  # idle workers file it; the fetch files what is left when it drains
    ingest.process_pending(
        ctx.db,
        ctx.mailbox_id,
        ctx.keeper.check,
        holder=ctx.holder,
        ahead=ctx.ahead,
        bodies=stored.bodies,
        fetch=True,
    )
    ctx.ahead.forget()


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
        skipped = 0
        for start in range(0, len(new), batch_size()):
            ctx.keeper.check()
            give_way()
            chunk = new[start : start + batch_size()]
            batch = [_pop3_message(box, mailbox, n, u, s) for n, u, s in chunk]
            _parse_early(ctx, batch)
            stored = store.store_batch(
                db, mailbox, ctx.run_id, ctx.holder, batch, backlog=ctx.backlog
            )
            skipped += stored.skipped
            committed = {f.uidl for f in stored.committed}
            to_delete += [n for n, u, _ in chunk if u in committed]
            _file_share(ctx, stored)
            if ctx.after_batch():
                more = True
                break
        if skipped:
            ctx.note(
                f"{skipped} message{'s' if skipped > 1 else ''} sent before Fetch mail since "
                f"({since_text(mailbox.fetch_since)}) set aside: left on the server, no case."
            )
        if mailbox.delete_after_fetch and to_delete:
            box.delete(sorted(set(to_delete)))
        box.quit()  # the server applies the DELEs now, after everything was committed
        quit_ok = True
    finally:
        ctx.fetch_commands = box.stats.fetch_commands
        if not quit_ok:
            box.close()
    return more


def _pop3_message(box: Pop3Box, mailbox: Mailbox, number: int, uidl: str, size: int) -> Fetched:
    """RETR the message; with Fetch mail since, one whose Date header is earlier is only noted
    (its UIDL is stored, so it is never read again)."""
    if mailbox.fetch_since is not None:
        head = box.headers(number)
        if sent_before(head, mailbox.fetch_since):
            reason = f"sent before Fetch mail since ({since_text(mailbox.fetch_since)})"
            return Fetched(size=size, raw=None, uidl=uidl, headers=head, skipped=reason)
    return box.retrieve(number, uidl, size, mailbox.max_message_bytes)
