"""After fetching, on the server: mark as read, move to a folder or delete, only after commit.

A row stays server_pending until its action is done, so a crash between the commit and the
action is finished by the next fetch of that folder (each action is harmless when repeated).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col, select

from webapp.mail.sync import ImapFolder
from webapp.models import RawMessage
from webapp.services.fetching.run import RunContext


def server_actions(
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


def pending_server_actions(ctx: RunContext, box: ImapFolder, folder: str, uidvalidity: int) -> None:
    """Finish mark-read / move / delete of messages committed before a crash (harmless if done)."""
    db, mailbox = ctx.db, ctx.mailbox
    where = [
        col(RawMessage.mailbox_id) == mailbox.id,
        col(RawMessage.server_pending).is_(True),
        col(RawMessage.folder) == folder,
    ]
    rows = db.exec(select(RawMessage.uid, RawMessage.uidvalidity).where(*where)).all()
    current = [uid for uid, uv in rows if uv == uidvalidity and uid is not None]
    if current and mailbox.after_fetch != "leave":
        server_actions(ctx, box, folder, uidvalidity, current)
    if rows:  # old UIDVALIDITY or option turned off: nothing left to do there
        db.exec(update(RawMessage).where(*where).values(server_pending=False))
        db.commit()


def forget_unread_folders(ctx: RunContext) -> None:
    """Pending server actions in folders no longer read are dropped: they are not selected."""
    ctx.db.exec(
        update(RawMessage)
        .where(
            col(RawMessage.mailbox_id) == ctx.mailbox_id,
            col(RawMessage.server_pending).is_(True),
            col(RawMessage.folder).not_in(ctx.mailbox.folder_list),
        )
        .values(server_pending=False)
    )
    ctx.db.commit()
