"""Processing stored raw messages into cases, comments and contacts (no mail server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from tests.helpers.messages import email
from tests.helpers.rows import store
from webapp.db import new_session
from webapp.mail.parse import DEFAULT_LIMITS
from webapp.models import (
    Attachment,
    Case,
    Contact,
    Counter,
    Mailbox,
    Message,
    RawMessage,
)
from webapp.services.ingest.batch import process_pending
from webapp.services.ingest.rows import MAX_ATTEMPTS, process_raw, reprocess


@pytest.fixture
def db(database_url):
    with new_session(database_url) as session:
        yield session


@pytest.fixture
def box(db) -> Mailbox:
    mailbox = Mailbox(
        name="Support",
        email_address="Support@Example.com",
        email_key="support@example.com",
        setup_complete=True,
        verify_state="ok",
        fetching_enabled=True,
    )
    db.add(mailbox)
    db.commit()
    return mailbox


def ingest(db, mailbox, raw: bytes, **kwargs) -> RawMessage:
    raw_id = store(db, mailbox, raw, **kwargs)
    process_raw(db, raw_id)
    row = db.get(RawMessage, raw_id)
    db.refresh(row)
    return row


def case_of(db, raw_id: int) -> Case:
    message = db.exec(select(Message).where(Message.raw_message_id == raw_id)).one()
    return db.get(Case, message.case_id)


def test_threads_by_headers_and_by_token_only_for_participants(db, box):
    first = ingest(
        db,
        box,
        email(
            "VPN down",
            sender="Alice <alice@example.org>",
            message_id="<v1@x>",
            cc="Bob <bob@example.org>, support@example.com",
        ),
    )
    case = case_of(db, first.id)
    assert case.number == 1
    assert case.subject == "VPN down"
    assert case.status == "open"
    by_reply = ingest(
        db, box, email("Re: VPN down", sender="alice@example.org", in_reply_to="<v1@x>")
    )
    by_refs = ingest(db, box, email("Re: VPN", sender="x@y.org", references="<nope@x> <v1@x>"))
    by_cc_token = ingest(db, box, email("Any news? [#1]", sender="BOB@example.org"))
    stranger = ingest(db, box, email("Give me access [#1]", sender="eve@example.net"))
    assert {case_of(db, r.id).id for r in (by_reply, by_refs, by_cc_token)} == {case.id}
    assert case_of(db, stranger.id).number == 2
    # the sender of a threaded reply takes part now, so its token works afterwards
    token_after_reply = ingest(db, box, email("Me again [#1]", sender="x@y.org"))
    assert case_of(db, token_after_reply.id).id == case.id
    keys = sorted(c.email_key for c in db.exec(select(Contact)).all())
    assert keys == ["alice@example.org", "bob@example.org", "eve@example.net", "x@y.org"]


def test_processing_is_idempotent(db, box):
    raw_id = store(db, box, email("Once only"))
    assert process_raw(db, raw_id) == "done"
    assert process_raw(db, raw_id) == "done"  # not NEW any more: nothing to do
    # filed, but the worker died before the state was written: the unique raw_message_id holds
    row = db.get(RawMessage, raw_id)
    row.state = "new"
    db.add(row)
    db.commit()
    assert process_raw(db, raw_id) == "done"
    assert len(db.exec(select(Message)).all()) == 1
    assert len(db.exec(select(Case)).all()) == 1


def test_allow_new_case_off_ignores_new_threads_but_keeps_replies(db, box):
    opened = ingest(db, box, email("Before", message_id="<b@x>"))
    box.allow_new_case = False
    db.add(box)
    db.commit()
    ignored = ingest(db, box, email("A new thread"))
    assert ignored.state == "ignored"
    assert "Allow New Case" in ignored.error
    reply = ingest(db, box, email("Re: Before", in_reply_to="<b@x>"))
    assert reply.state == "done"
    assert case_of(db, reply.id).id == case_of(db, opened.id).id


def test_create_new_contact_off_holds_unknown_senders_for_review(db, box):
    # Issue 5: with Create New Contact off an unknown sender's message is held (tests/test_filtering.py).
    box.create_new_contact = False
    db.add(box)
    db.commit()
    row = ingest(db, box, email("No contact", sender="nobody@example.org"))
    assert row.state == "ignored"
    assert "Create New Contact is off" in row.error
    assert db.exec(select(Case)).all() == []
    assert db.exec(select(Contact)).all() == []


def _with_attachments(count: int) -> bytes:
    parts = ["--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"]
    for i in range(count):
        parts.append(
            f"--b\r\nContent-Type: application/octet-stream\r\n"
            f'Content-Disposition: attachment; filename="f{i}.bin"\r\n\r\ndata{i}\r\n'
        )
    body = "".join(parts) + "--b--\r\n"
    head = (
        "From: a@example.org\r\nTo: support@example.com\r\nSubject: files\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    )
    return (head + body).encode()


@pytest.mark.parametrize("keep, with_bytes", [(True, 5), (False, 0)])
def test_attachments_keep_metadata_and_the_first_five_bytes(db, box, keep, with_bytes):
    box.keep_attachments = keep
    db.add(box)
    db.commit()
    row = ingest(db, box, _with_attachments(7))
    message = db.exec(select(Message).where(Message.raw_message_id == row.id)).one()
    attachments = db.exec(
        select(Attachment).where(Attachment.message_id == message.id).order_by(Attachment.id)
    ).all()
    assert [a.filename for a in attachments] == [f"f{i}.bin" for i in range(7)]
    assert sum(a.data is not None for a in attachments) == with_bytes
    assert all(a.size == 5 for a in attachments)


def test_text_is_the_reply_part_and_full_text_is_kept(db, box):
    marker = box.end_of_message_marker
    body = f"Thanks, that fixed it.\n\n{marker}\n\nOn Monday support wrote:\n> old text\n"
    row = ingest(db, box, email("Re: fixed", body=body))
    message = db.exec(select(Message).where(Message.raw_message_id == row.id)).one()
    assert message.text == "Thanks, that fixed it."
    assert "old text" in message.full_text
    assert message.html is None


def test_automated_and_backlog_flags_are_kept_for_acknowledgements(db, box):
    auto = ingest(
        db, box, email("Out of office", extra="Auto-Submitted: auto-replied"), backlog=True
    )
    message = db.exec(select(Message).where(Message.raw_message_id == auto.id)).one()
    assert message.automated
    assert "Auto-Submitted" in message.automated
    assert message.backlog
    # Issue 5: mail from our own mailbox is a loop, logged as filtered (tests/test_filtering.py).
    own = ingest(db, box, email("Loop", sender="SUPPORT@example.com"))
    assert own.state == "ignored"
    assert "our own mailbox" in own.error
    assert db.exec(select(Message).where(Message.raw_message_id == own.id)).first() is None


def test_a_message_that_kills_the_worker_is_failed_after_the_attempt_limit(db, box):
    raw_id = store(db, box, email("Poison"))
    row = db.get(RawMessage, raw_id)
    row.attempts = MAX_ATTEMPTS  # three workers died on it already
    db.add(row)
    db.commit()
    assert process_raw(db, raw_id) == "failed"
    db.refresh(row)
    assert "interrupted" in row.error
    assert reprocess(db, raw_id) == "done"


def test_parse_failure_is_kept_raw_with_the_reason_and_reprocess_retries(db, box):
    huge_header = email(
        "Huge header", extra="X-Filler: " + "a" * (DEFAULT_LIMITS.max_header_bytes + 10)
    )
    bad = store(db, box, huge_header)
    good = store(db, box, email("Fine"))
    assert process_pending(db, box.id) == {"failed": 1, "done": 1}
    row = db.get(RawMessage, bad)
    assert row.state == "failed"
    assert "header block" in row.error
    bigger = DEFAULT_LIMITS.__class__(max_header_bytes=DEFAULT_LIMITS.max_header_bytes * 2)
    assert reprocess(db, bad, limits=bigger) == "done"
    assert db.get(RawMessage, good).state == "done"


def test_case_numbers_are_unique_and_increasing_even_without_the_counter_row(db, box):
    numbers = [case_of(db, ingest(db, box, email(f"N{i}")).id).number for i in range(3)]
    db.delete(db.get(Counter, "case"))
    db.commit()
    numbers.append(case_of(db, ingest(db, box, email("N3")).id).number)
    assert numbers == [1, 2, 3, 4]


DATA = Path(__file__).parent / "data" / "fetch"


def test_fixture_mails_with_known_stdlib_traps_are_ingested(db, box):
    new = ingest(db, box, (DATA / "new-thread.eml").read_bytes())
    reply = ingest(db, box, (DATA / "reply-with-marker.eml").read_bytes())
    assert case_of(db, reply.id).id == case_of(db, new.id).id
    message = db.exec(select(Message).where(Message.raw_message_id == reply.id)).one()
    assert message.text == "It works now, thanks!"
    assert "pixel.gif" in message.html  # raw html
    assert len(db.exec(select(Contact)).all()) == 1  # Grace@Example.org is grace@example.org
    bogus = ingest(db, box, (DATA / "bogus-charset.eml").read_bytes())
    assert bogus.state == "done"
    assert "iso-2022-jp" in _message(db, bogus).parse_notes
    bounce = ingest(db, box, (DATA / "unlisted-recipients.eml").read_bytes())
    assert bounce.state == "done"
    assert _message(db, bounce).automated
    assert _message(db, bounce).to_addresses == ""


def _message(db, raw: RawMessage) -> Message:
    return db.exec(select(Message).where(Message.raw_message_id == raw.id)).one()
