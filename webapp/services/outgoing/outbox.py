"""The outbox: queue a message, send it once, retry what may be retried, show what failed.

Crash safety (never twice, never dropped silently):

1. enqueue() builds the whole message and stores its raw bytes and Message-ID in the row,
   in the caller's transaction: the case and its acknowledgement commit together.
2. A send job claims the row with one atomic UPDATE queued -> sending (holder, lease,
   sending_started_at, attempts + 1) and commits before it connects: two jobs for one
   row (RQ delivers at least once) cannot both send it.
3. After the server accepted the message, a separate commit marks it sent.
4. A row still "sending" when its lease has run out belongs to a worker that died
   between 2 and 3: the server may or may not have the message. It is NOT sent again
   by itself (that could be a duplicate); it becomes "uncertain", shown on the case,
   in the outbox log and in the API, with "Send again" and "Mark as sent" for a person
   who checked. The same bytes go out again, with the same Message-ID, so a duplicate
   the person allows still threads (and is deduplicated by many clients).

4xx replies, timeouts and connection failures are retried with exponential backoff (up to
delivery.MAX_ATTEMPTS); a 5xx reply fails the row at once with the server's answer. A
timeout after the message data was sent is the one case SMTP itself leaves ambiguous
(RFC 1047); it is retried like any timeout, as every mail server does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from email.message import EmailMessage

from redis.exceptions import RedisError
from sqlalchemy import or_, update
from sqlmodel import Session, col, func, select

from webapp.db import insert_ignore, utcnow
from webapp.mail.compose import build_message
from webapp.mail.thread import subject_with_token
from webapp.models import Case, Mailbox, OutboxMessage
from webapp.models import outbox as states
from webapp.models.contact import email_key
from webapp.queue import get_queue
from webapp.services.filters import DEFAULT_CEILING
from webapp.services.outgoing.delivery import SEND_JOB_TIMEOUT

log = logging.getLogger(__name__)

QUEUED_STALE = timedelta(minutes=3)  # a send job not started by then was lost by Redis


# -- queueing -------------------------------------------------------------------------


def enqueue(
    db: Session, mailbox: Mailbox, *, to_addr: str, to_name: str, subject: str, text: str,
    html: str | None = None, kind: str, case_id: int | None = None, idempotency_key: str,
    in_reply_to: str | None = None, references: Iterable[str] = (),
    auto_submitted: str | None = None, cc: Iterable[str] = (),
) -> OutboxMessage:  # fmt: skip
    """Queue one message (flushed, not committed); the existing row if the key was used.

    `cc`: addresses copied (a reply keeps the customer's Cc); stored in the raw message's Cc
    header, which delivery sends to as well.

    With a case, the subject gets the case token [#N]. Every message starts with the
    mailbox's End of Message Marker. Automatic mail (auto_submitted set) over the
    per-sender ceiling is stored "suppressed" and never sent.
    """
    existing = by_key(db, idempotency_key)
    if existing is not None:
        return existing
    case = db.get(Case, case_id) if case_id is not None else None
    if case is not None:
        subject = subject_with_token(subject, case.number)
    msg = build_message(
        from_addr=mailbox.email_address, from_name=mailbox.name, to_addr=to_addr,
        to_name=to_name or "", subject=subject, text=text, html=html,
        message_id_domain=mailbox.email_address.rpartition("@")[2],
        in_reply_to=in_reply_to, references=references, auto_submitted=auto_submitted,
        marker=mailbox.end_of_message_marker, cc=cc,
    )  # fmt: skip
    now = utcnow()
    row = OutboxMessage(
        idempotency_key=idempotency_key[:200], kind=kind[:32], mailbox_id=mailbox.id,
        case_id=case_id, to_addr=to_addr.strip()[:320], to_key=email_key(to_addr)[:320],
        to_name=str(msg["To"].addresses[0].display_name)[:200], subject=str(msg["Subject"])[:1000],
        text=text, html=html, auto_submitted=auto_submitted,
        message_id=str(msg["Message-ID"]).strip(), in_reply_to=str(msg["In-Reply-To"] or ""),
        references_ids=str(msg["References"] or ""), raw=_flatten(msg, to_addr, mailbox),
        next_attempt_at=now, created_at=now, updated_at=now,
    )  # fmt: skip
    if auto_submitted:
        sent = automatic_count(db, mailbox.id, row.to_key, DEFAULT_CEILING.window_start(now))
        if DEFAULT_CEILING.reached(sent):
            row.state, row.last_error_kind = states.SUPPRESSED, "ceiling"
            row.last_error = f"Not sent: {DEFAULT_CEILING.describe(sent)}."
            log.warning("automatic mail to %s suppressed: %s", row.to_key, row.last_error)
    db.exec(insert_ignore(db, OutboxMessage.__table__).values(**row.model_dump(exclude={"id"})))
    return by_key(db, idempotency_key)


def _flatten(msg: EmailMessage, to_addr: str, mailbox: Mailbox) -> bytes:
    utf8 = not (to_addr.isascii() and mailbox.email_address.isascii())
    utf8 = utf8 or not str(msg["Cc"] or "").isascii()
    return msg.as_bytes(policy=msg.policy.clone(utf8=utf8))


def by_key(db: Session, idempotency_key: str) -> OutboxMessage | None:
    query = select(OutboxMessage).where(OutboxMessage.idempotency_key == idempotency_key[:200])
    return db.exec(query).first()


def automatic_count(db: Session, mailbox_id: int, to_key: str, since: datetime) -> int:
    """Automatic mails (Auto-Submitted) queued or sent to this address from this mailbox since."""
    query = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.mailbox_id == mailbox_id,
            OutboxMessage.to_key == to_key,
            col(OutboxMessage.auto_submitted).is_not(None),
            OutboxMessage.state != states.SUPPRESSED,
            col(OutboxMessage.created_at) >= since,
        )
    )
    return db.exec(query).one()


def last_of_kind(db: Session, mailbox_id: int, to_key: str, kind: str) -> datetime | None:
    """When this mailbox last queued a message of this kind to this address (suppressed aside)."""
    query = select(func.max(OutboxMessage.created_at)).where(
        OutboxMessage.mailbox_id == mailbox_id,
        OutboxMessage.to_key == to_key,
        OutboxMessage.kind == kind,
        OutboxMessage.state != states.SUPPRESSED,
    )
    return db.exec(query).one()


# -- ringing the bell -----------------------------------------------------------------


def request_send(db: Session, outbox_id: int, redis_url: str, queue_name: str) -> bool:
    """Enqueue a send job for a due row unless a recent one is queued; commits.

    If Redis is down the row stays due in the database for the next tick, and the
    RedisError is raised for the caller to report.
    """
    now = utcnow()
    claimed = db.exec(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == outbox_id, OutboxMessage.state == states.QUEUED)
        .where(_no_recent_job(now))
        .values(job_enqueued_at=now)
    ).rowcount
    db.commit()
    if claimed != 1:
        return False
    try:
        get_queue(redis_url, queue_name).enqueue(
            "worker.jobs.send_outbox_message", outbox_id, job_timeout=SEND_JOB_TIMEOUT,
            result_ttl=600, failure_ttl=86400,
        )  # fmt: skip
    except RedisError:
        db.exec(
            update(OutboxMessage).where(col(OutboxMessage.id) == outbox_id)
            .values(job_enqueued_at=None)
        )  # fmt: skip
        db.commit()
        raise
    return True


def _no_recent_job(now: datetime):
    return or_(
        col(OutboxMessage.job_enqueued_at).is_(None),
        col(OutboxMessage.job_enqueued_at) < now - QUEUED_STALE,
    )


def dispatch_due(db: Session, redis_url: str, queue_name: str, limit: int = 200) -> int:
    """The tick: mark dead workers' sends uncertain, enqueue a job per due row."""
    recover_interrupted(db)
    now = utcnow()
    due = db.exec(
        select(OutboxMessage.id)
        .where(OutboxMessage.state == states.QUEUED, col(OutboxMessage.next_attempt_at) <= now)
        .where(_no_recent_job(now))
        .order_by(col(OutboxMessage.next_attempt_at))
        .limit(limit)
    ).all()
    count = 0
    for outbox_id in due:
        try:
            count += request_send(db, outbox_id, redis_url, queue_name)
        except RedisError:
            log.warning(
                "the queue cannot be reached; %d message(s) wait for the next tick", len(due)
            )
            break
    return count


def recover_interrupted(db: Session) -> int:
    """Rows left "sending" by a worker that died: uncertain, for a person to decide."""
    now = utcnow()
    count = db.exec(
        update(OutboxMessage)
        .where(OutboxMessage.state == states.SENDING, col(OutboxMessage.lease_until) < now)
        .values(
            state=states.UNCERTAIN,
            last_error_kind="interrupted",
            updated_at=now,
            last_error=(
                "The worker stopped while this message was being sent, so it is not known "
                "whether the server accepted it. It is not sent again by itself, to avoid a "
                "duplicate: check with the recipient or in the SMTP server's log, then choose "
                "Send again or Mark as sent."
            ),
        )  # fmt: skip
    ).rowcount
    db.commit()
    if count:
        log.warning("%d outgoing message(s) interrupted mid-send are now uncertain", count)
    return count


# -- what a person does about failed and uncertain rows ------------------------------


def send_again(db: Session, outbox_id: int) -> bool:
    """Failed or uncertain -> queued now, same bytes and Message-ID; commits. False if not allowed."""
    now = utcnow()
    changed = db.exec(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == outbox_id)
        .where(col(OutboxMessage.state).in_(states.NEEDS_ATTENTION))
        .values(
            state=states.QUEUED,
            attempts=0,
            next_attempt_at=now,
            job_enqueued_at=None,
            holder=None,
            lease_until=None,
            updated_at=now,
        )  # fmt: skip
    ).rowcount
    db.commit()
    return changed == 1


def mark_sent(db: Session, outbox_id: int, by: str) -> bool:
    """An uncertain row a person found delivered: sent, with a note who said so; commits."""
    now = utcnow()
    changed = db.exec(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == outbox_id, OutboxMessage.state == states.UNCERTAIN)
        .values(
            state=states.SENT,
            sent_at=now,
            updated_at=now,
            last_error_kind="marked_sent",
            last_error=f"Marked as sent by {by} after the interrupted send.",
        )  # fmt: skip
    ).rowcount
    db.commit()
    return changed == 1


# -- reading --------------------------------------------------------------------------


def for_case(db: Session, case_id: int) -> list[OutboxMessage]:
    """A case's outgoing mail, oldest first."""
    query = select(OutboxMessage).where(OutboxMessage.case_id == case_id)
    return list(db.exec(query.order_by(col(OutboxMessage.id))).all())


def mailbox_summary(db: Session, mailbox_id: int, limit: int = 10) -> dict:
    """A mailbox's latest outgoing mail, its total, and how many need attention (the trouble)."""
    latest, total = listing(db, mailbox_id=mailbox_id, per_page=limit)
    trouble = sum(
        listing(db, mailbox_id=mailbox_id, state=state, per_page=1)[1]
        for state in states.NEEDS_ATTENTION
    )
    return {"rows": latest, "total": total, "trouble": trouble}


def listing(
    db: Session, *, mailbox_id: int | None = None, state: str | None = None,
    page: int = 1, per_page: int = 50,
) -> tuple[list[OutboxMessage], int]:  # fmt: skip
    """One page of the outbox log, newest first, and the total."""
    query = select(OutboxMessage)
    count = select(func.count()).select_from(OutboxMessage)
    for condition in (
        OutboxMessage.mailbox_id == mailbox_id if mailbox_id else None,
        OutboxMessage.state == state if state else None,
    ):
        if condition is not None:
            query, count = query.where(condition), count.where(condition)
    rows = db.exec(
        query.order_by(col(OutboxMessage.id).desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return list(rows), db.exec(count).one()
