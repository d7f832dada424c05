"""A fetched batch is filed in one transaction; a deadlock with another worker loses nothing."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from tests.helpers.databases import COVERED, fresh_database, migrate, postgres_answers
from tests.helpers.messages import email
from tests.helpers.rows import store
from webapp.db import new_session, utcnow
from webapp.models import Case, Contact, Counter, Mailbox, Message, RawMessage
from webapp.services.ingest.batch import process_ids


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
            # …and now makes the contact our batch made first: a deadlock. (Not the case
            # number: on PostgreSQL it comes from a sequence, which locks nothing.)
            with contextlib.suppress(DBAPIError):  # the victim may be this one
                other.execute(Contact.__table__.insert().values(
                    email="new@a.example", email_key="new@a.example", name="",
                    created_at=now, updated_at=now))  # fmt: skip
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


def test_a_batch_finds_what_its_own_earlier_messages_filed(database_url):
    """Lookups are asked once per window: a reply to a reply, and a second mail from a new
    sender, filed after the message they follow in the same batch, still find them."""
    with new_session(database_url) as db:
        box = _mailbox(db)
        ids = [
            store(db, box, email("Printer broken", sender="Ann@A.example",
                                 message_id="<p1@a.example>")),
            store(db, box, email("Re: Printer broken", sender="bob@b.example",
                                 message_id="<p2@b.example>", in_reply_to="<p1@a.example>")),
            store(db, box, email("Re: Printer broken", sender="ann@a.example",
                                 message_id="<p3@a.example>", in_reply_to="<p2@b.example>")),
            store(db, box, email("Another question", sender="ann@a.example")),
        ]  # fmt: skip
        assert process_ids(db, ids) == {"done": 4}
        contacts = db.exec(select(Contact)).all()
        messages = {m.raw_message_id: m for m in db.exec(select(Message)).all()}
        cases = {c.id: c.subject for c in db.exec(select(Case)).all()}
    assert sorted(c.email_key for c in contacts) == ["ann@a.example", "bob@b.example"]
    ann = next(c.id for c in contacts if c.email_key == "ann@a.example")
    assert [messages[i].contact_id == ann for i in ids] == [True, False, True, True]
    assert len({messages[i].case_id for i in ids[:3]}) == 1  # one thread, three messages
    assert sorted(cases.values()) == ["Another question", "Printer broken"]


def test_a_message_rolled_back_mid_batch_takes_back_the_contact_it_made(database_url, monkeypatch):
    """The first mail of a new sender fails after its contact was made: the savepoint takes
    the contact back, and the sender's next mail in the same batch makes it again."""
    from webapp.services.ingest import route

    real = route.add_attachments

    def failing(db, mailbox, message, parsed):
        if parsed.subject == "Poison":
            raise ValueError("a bug in filing")
        return real(db, mailbox, message, parsed)

    monkeypatch.setattr(route, "add_attachments", failing)
    with new_session(database_url) as db:
        box = _mailbox(db)
        ids = [store(db, box, email("Poison", sender="new@c.example")),
               store(db, box, email("Fine", sender="new@c.example"))]  # fmt: skip
        assert process_ids(db, ids) == {"failed": 1, "done": 1}
        failed = db.get(RawMessage, ids[0])
        db.refresh(failed)
        contact = db.exec(select(Contact).where(Contact.email_key == "new@c.example")).one()
        message = db.exec(select(Message)).one()
    assert "ValueError" in failed.error
    assert message.raw_message_id == ids[1]
    assert message.contact_id == contact.id


def test_a_confirmation_reply_in_a_batch_makes_the_senders_next_mail_known(database_url):
    """A reply to our confirmation mail releases the held message and makes its sender a
    contact; the sender's next mail in the same batch is filed, not held again."""
    from webapp.models import HeldMessage

    with new_session(database_url) as db:
        box = _mailbox(db)
        box.confirm_unknown_senders = True
        db.add(box)
        db.commit()
        first = store(db, box, email("Need help", sender="sam@s.example"))
        assert process_ids(db, [first]) == {"ignored": 1}
        held = db.exec(select(HeldMessage)).one()
        assert held.reason == "confirmation"
        held.mail_message_id = "<challenge-1@example.com>"  # the confirmation mail we sent
        db.add(held)
        db.commit()
        ids = [
            store(db, box, email("Re: Please confirm", sender="sam@s.example",
                                 in_reply_to="<challenge-1@example.com>")),
            store(db, box, email("One more thing", sender="sam@s.example")),
        ]  # fmt: skip
        counts = process_ids(db, ids)
        db.refresh(held)
        subjects = sorted(c.subject for c in db.exec(select(Case)).all())
        second = db.get(RawMessage, ids[1])
        db.refresh(second)
    assert held.state == "released"
    assert subjects == ["Need help", "One more thing"]
    assert second.state == "done", second.error
    assert counts == {"ignored": 1, "done": 1}  # the reply itself opens no case


@pytest.mark.postgres
def test_a_row_finished_by_another_run_during_the_batch_keeps_that_outcome(
    postgres_url, monkeypatch
):
    """Reprocess (another run) finishes a row while the fetch's batch is still open: the
    batch does not overwrite it or file it twice, and its other rows are filed."""
    from webapp.services.ingest import route

    url = postgres_url
    with new_session(url) as db:
        box = _mailbox(db)
        ids = [store(db, box, email("First", sender="ann@a.example")),
               store(db, box, email("Second", sender="bob@b.example"))]  # fmt: skip
    real = route.file_message

    def other_run_finishes_the_first(db, found, mailbox, raw, parsed):
        if parsed.subject == "Second":  # the first row is filed in the open batch by now
            with new_session(url) as other:
                other.exec(update(RawMessage).where(RawMessage.id == ids[0])
                           .values(state="failed", error="set by another run"))  # fmt: skip
                other.commit()
        return real(db, found, mailbox, raw, parsed)

    monkeypatch.setattr(route, "file_message", other_run_finishes_the_first)
    with new_session(url) as db:
        counts = process_ids(db, ids)
        first = db.get(RawMessage, ids[0])
        db.refresh(first)
        messages = db.exec(select(Message)).all()
        cases = db.exec(select(Case.subject)).all()
    assert counts == {"failed": 1, "done": 1}
    assert first.state == "failed"
    assert first.error == "set by another run"
    assert [m.raw_message_id for m in messages] == [ids[1]]
    assert cases == ["Second"]


@pytest.mark.postgres
def test_postgresql_numbers_cases_in_order_from_its_sequence_not_the_counter_row(postgres_url):
    """On PostgreSQL the number comes from a sequence in the statement that inserts the case."""
    with new_session(postgres_url) as db:
        box = _mailbox(db)
        first = [store(db, box, email(f"N{i}", sender=f"n{i}@x.example")) for i in range(3)]
        assert process_ids(db, first) == {"done": 3}
        db.delete(db.get(Counter, "case"))  # the counter row is not used there
        db.commit()
        assert process_ids(db, [store(db, box, email("N3", sender="n3@x.example"))]) == {"done": 1}
        numbers = db.exec(select(Case.subject, Case.number).order_by(Case.number)).all()
    assert [tuple(n) for n in numbers] == [("N0", 1), ("N1", 2), ("N2", 3), ("N3", 4)]
