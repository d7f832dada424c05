"""RQ jobs. Arguments are ids only: never a secret in Redis."""

from __future__ import annotations

import logging

from sqlmodel import select

from webapp import crypto
from webapp.config import load_settings
from webapp.db import new_session
from webapp.models import Mailbox
from webapp.queue import get_queue
from webapp.services import verify

log = logging.getLogger(__name__)


def _context():
    settings = load_settings()
    crypto.configure(settings.encryption_keys)
    return settings, new_session(settings.database_url)


def verify_mailbox(mailbox_id: int) -> dict:
    """Mailbox Setup's check: connect, log in, count."""
    settings, db = _context()
    with db:
        mailbox = verify.run_verification(db, mailbox_id, settings.mail_ca_bundle)
        if mailbox is None:
            return {"state": "gone"}
        return {"state": mailbox.verify_state, "count": mailbox.message_count}


def enqueue_verification(mailbox_id: int, redis_url: str, queue_name: str) -> str:
    job = get_queue(redis_url, queue_name).enqueue(
        "worker.jobs.verify_mailbox", mailbox_id, job_timeout=120, result_ttl=600, failure_ttl=3600
    )
    return job.id


def sweep() -> int:
    """Re-enqueue verifications the database says are waiting but that no job picked up."""
    settings, db = _context()
    count = 0
    with db:
        for mailbox in db.exec(select(Mailbox).where(Mailbox.verify_state == "pending")):
            if verify.is_stuck(mailbox) and settings.redis_url:
                job_id = enqueue_verification(mailbox.id, settings.redis_url, settings.queue_name)
                verify.mark_pending(db, mailbox, job_id)
                count += 1
    if count:
        log.info("sweep re-enqueued %d verification(s)", count)
    return count
