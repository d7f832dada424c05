"""RQ jobs. Arguments are ids only: never a secret in Redis."""

from __future__ import annotations

import logging

from rq import get_current_job

from webapp import crypto
from webapp.config import load_settings
from webapp.db import new_session
from webapp.services import oauth
from webapp.services.fetching import fetch, poll, schedule, verify
from webapp.services.ingest import held, shared
from webapp.services.outgoing import delivery, outbox

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


def fetch_mailbox(mailbox_id: int) -> dict:
    """Fetch one mailbox: process what a crash left, store new mail first, then process it."""
    settings = load_settings()
    crypto.configure(settings.encryption_keys)
    job = get_current_job()

    def progress(done: int, total: int | None) -> None:
        if job is not None:
            job.meta["progress"] = {"done": done, "total": total}
            job.save_meta()

    return fetch.fetch_mailbox(settings.database_url, mailbox_id, settings.mail_ca_bundle, progress)


def file_stored(mailbox_id: int) -> dict:
    """File what a mailbox's fetch stored, beside it, on an idle worker (offered by the fetch)."""
    _settings, db = _context()
    with db:
        return shared.file_stored(db, mailbox_id)


def poll_mailboxes(mailbox_ids: list[int]) -> list:
    """Poll mailboxes whose first fetch is done: a group of the scheduler's, or one for push.

    MailWorker runs it without forking (worker/rqworker.py)."""
    settings = load_settings()
    crypto.configure(settings.encryption_keys)
    return poll.poll_mailboxes(settings.database_url, mailbox_ids, settings.mail_ca_bundle)


def schedule_fetches() -> int:
    """The scheduler's tick: enqueue a fetch for every mailbox whose interval is up."""
    settings, db = _context()
    if not settings.redis_url:
        return 0
    with db:
        return schedule.schedule_due(db, settings.redis_url, settings.queue_name)


def sweep() -> int:
    """Re-enqueue work the database says is due but that no job holds (lost jobs heal)."""
    settings, db = _context()
    count = 0
    with db:
        if settings.redis_url:
            count += verify.sweep_verifications(db, settings.redis_url, settings.queue_name)
            count += schedule.sweep_fetches(db, settings.redis_url, settings.queue_name)
        oauth.forget_expired_authorizations(db)
    if count:
        log.info("sweep re-enqueued %d job(s)", count)
    return count


def send_outbox_message(outbox_id: int) -> dict:
    """Send one outbox row (claimed atomically: a duplicate job finds nothing to do)."""
    settings, db = _context()
    with db:
        return {"state": delivery.deliver(db, outbox_id, settings.mail_ca_bundle)}


def dispatch_outbox() -> int:
    """The outbox tick: interrupted sends become uncertain, due rows get a send job."""
    settings, db = _context()
    if not settings.redis_url:
        return 0
    with db:
        return outbox.dispatch_due(db, settings.redis_url, settings.queue_name)


def expire_held_messages() -> int:
    """Confirmation holds whose time ran out become expired (services/ingest/held.py)."""
    settings, db = _context()
    with db:
        return held.expire_due(db)
