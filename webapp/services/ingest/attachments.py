"""The attachments of a filed message: which ones are kept, and their rows.

The first KEPT_ATTACHMENTS parts with Content-Disposition: attachment, in MIME order,
are kept when the mailbox keeps attachments; inline images do not count and stay
viewable in the message; nothing over the per-attachment size limit is kept; with
Attachments off nothing is. An attachment not kept still gets its row, with the reason.
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlmodel import Session

from webapp.mail.parse import ParsedMessage
from webapp.models import Attachment, Mailbox

_INSERT_ATTACHMENT = insert(Attachment.__table__)
KEPT_ATTACHMENTS = 5  # bytes of the first five attachments, when the mailbox keeps them
NOT_KEPT_BEYOND_LIMIT = f"only the first {KEPT_ATTACHMENTS} attachments of a message are kept"
NOT_KEPT_ATTACHMENTS_OFF = "this mailbox does not keep attachments (Attachments is off)"


def attachment_verdicts(mailbox: Mailbox, attachments: list) -> list[str | None]:
    """Per attachment, None when its bytes are kept, else why not."""
    limit = mailbox.max_attachment_bytes or 0
    counted, verdicts = 0, []
    for item in attachments:
        if limit and item.size > limit:
            verdicts.append(f"larger than the {mailbox.max_attachment_mb} MB limit per attachment")
            continue
        if not mailbox.keep_attachments:
            verdicts.append(NOT_KEPT_ATTACHMENTS_OFF)
            continue
        if item.inline:
            verdicts.append(None)
            continue
        counted += 1
        if counted > KEPT_ATTACHMENTS:
            verdicts.append(NOT_KEPT_BEYOND_LIMIT)
        else:
            verdicts.append(None)
    return verdicts


def add_attachments(db: Session, mailbox: Mailbox, message_id: int, parsed: ParsedMessage) -> None:
    """The rows of the message's attachments, with their bytes where they are kept."""
    verdicts = attachment_verdicts(mailbox, parsed.attachments)
    rows = [
        dict(
            message_id=message_id,
            filename=item.filename[:255],
            content_type=item.content_type[:255],
            size=item.size,
            content_id=item.content_id[:998] if item.content_id else None,
            inline=item.inline,
            data=item.data if reason is None else None,
            not_kept_reason=reason,
        )
        for item, reason in zip(parsed.attachments, verdicts, strict=True)
    ]
    if rows:  # one statement (executemany) for all of them
        db.exec(_INSERT_ATTACHMENT, params=rows)
