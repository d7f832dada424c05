"""A fetched batch is filed in one transaction; a deadlock with another worker loses nothing."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import select

from tests.conftest import migrate
from tests.fetch_support import email
from tests.postgres import COVERED, fresh_database, postgres_answers
from tests.test_ingest import store
from webapp.db import new_session, utcnow
from webapp.models import Case, Contact, Mailbox, Message, RawMessage
from webapp.services.ingest import process_ids


def _mailbox(db) -> Mailbox:
    box = Mailbox(name="Support", email_address="support@example.com",
                  email_key="support@example.com", setup_complete=True, verify_state="ok",
                  fetching_enabled=True)  # fmt: skip
    db.add(box)
    db.commit()
    return box


def test_a_batch_files_every_message_once_and_counts_them(database_url):
    with new_session(database_url) as db:
        box = _mailbox(db)
        first = email("Printer broken", sender="ann@a.example", message_id="<p1@a.example>")
        reply = email("Re: Printer broken", sender="ann@a.example", in_reply_to="<p1@a.example>")
        ids = [store(db, box, first), store(db, box, reply),
               store(db, box, email("VPN", sender="bob@b.example"))]  # fmt: skip
        assert process_ids(db, ids) == {"done": 3}
        assert process_ids(db, ids) == {"done": 3}  # a replayed job changes nothing
        assert len(db.exec(select(Case)).all()) == 2
        assert len(db.exec(select(Message)).all()) == 3


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_answers(), reason="no PostgreSQL answers on 127.0.0.1:5432")
def test_a_deadlock_with_another_worker_is_rolled_back_and_every_message_filed_once():
    """Two PostgreSQL workers filing mail from the same senders can lock rows in opposite
    order: the batch that PostgreSQL aborts is filed again, one message per transaction."""
    with fresh_database() as url:
        migrate(url)
        COVERED.add("PostgreSQL")
        with new_session(url) as db:
            box = _mailbox(db)
            ids = [store(db, box, email("New printer", sender="new@a.example")),
                   store(db, box, email("Invoice", sender="x@b.example"))]  # fmt: skip

        engine = create_engine(url)
        other = engine.connect()  # another worker, in the middle of its own batch
        now = utcnow()
        other.execute(Contact.__table__.insert().values(
            email="x@b.example", email_key="x@b.example", name="", created_at=now,
            updated_at=now))  # fmt: skip

        def other_worker() -> None:
            with engine.connect() as watcher:  # wait until our batch waits for that contact
                watcher.execution_options(isolation_level="AUTOCOMMIT")
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and not watcher.execute(text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )).scalar():  # fmt: skip
                    time.sleep(0.05)
            # …and now wants the case counter our batch holds: a deadlock.
            other.execute(text("UPDATE counter SET value = value + 1 WHERE name = 'case'"))
            other.rollback()

        thread = threading.Thread(target=other_worker)
        thread.start()
        try:
            with new_session(url) as db:
                counts = process_ids(db, ids)
                attempts = [db.get(RawMessage, i).attempts for i in ids]
                cases = db.exec(select(Case)).all()
                messages = db.exec(select(Message)).all()
                contacts = db.exec(select(Contact.email_key)).all()
        finally:
            thread.join(30)
            other.close()
            engine.dispose()
        assert counts == {"done": 2}
        assert attempts == [2, 2]  # the batch was rolled back once and filed again
        assert sorted(c.subject for c in cases) == ["Invoice", "New printer"]
        assert sorted(m.raw_message_id for m in messages) == sorted(ids)
        assert sorted(contacts) == ["new@a.example", "x@b.example"]
