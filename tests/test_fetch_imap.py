"""IMAP fetching against the real Dovecot: threads, cursor, UIDVALIDITY, flags, deletion."""

from __future__ import annotations

from datetime import timedelta

import pytest
from imapclient import IMAPClient
from rq.job import Job
from sqlmodel import select

from tests.helpers.mailboxes import fetch, make_mailbox, update_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import cases_by_subject, contacts, counts, mailbox, messages_of, raws, runs
from webapp.db import new_session, utcnow
from webapp.mail.connect import tls_context
from webapp.models import Case, FetchCursor, Mailbox, Message, RawMessage
from webapp.queue import get_queue
from webapp.services.fetching.schedule import request_fetch, turn_on_fetching
from webapp.services.fetching.status import mailbox_status


def _thread(user) -> None:
    """Two threads, replies by In-Reply-To, References and [#N], and a stranger's [#1]."""
    user.deliver(
        email(
            "Printer on fire",
            sender="Alice <alice@example.org>",
            message_id="<a1@x>",
            cc="bob@example.org",
        )
    )
    user.deliver(email("Login broken", sender="carol@example.org", message_id="<c1@x>"))
    user.deliver(
        email(
            "Re: Printer on fire",
            sender="alice@example.org",
            message_id="<a2@x>",
            in_reply_to="<a1@x>",
        )
    )
    user.deliver(
        email(
            "Re: Re: Printer on fire",
            sender="ALICE@Example.ORG",
            message_id="<a3@x>",
            references="<zz@elsewhere> <a1@x> <a2@x>",
        )
    )
    user.deliver(email("Still burning [#1]", sender="bob@example.org", message_id="<b1@x>"))
    user.deliver(email("Let me in [#1]", sender="mallory@evil.example", message_id="<e1@x>"))


def test_messages_become_cases_and_comments(app_env, dovecot, mail_user):
    _thread(mail_user)
    box = make_mailbox(app_env, dovecot, mail_user)
    result = fetch(app_env, box)
    assert result["state"] == "ok"
    assert result["new"] == 6
    cases = cases_by_subject(app_env)
    assert sorted(cases) == ["Let me in [#1]", "Login broken", "Printer on fire"]
    printer = cases["Printer on fire"]
    assert printer.number == 1
    assert printer.requester_email == "alice@example.org"
    thread = messages_of(app_env, printer.id)
    assert [m.message_id for m in thread] == ["<a1@x>", "<a2@x>", "<a3@x>", "<b1@x>"]
    assert [m.opened_case for m in thread] == [True, False, False, False]
    stranger = cases["Let me in [#1]"]
    assert stranger.number == 3
    assert stranger.requester_email == "mallory@evil.example"
    # one contact per address, whatever its case
    assert sorted(c.email_key for c in contacts(app_env)) == [
        "alice@example.org",
        "bob@example.org",
        "carol@example.org",
        "mallory@evil.example",
    ]
    assert all(r.state == "done" for r in raws(app_env, box))


def test_a_second_fetch_adds_nothing_and_sends_no_fetch(app_env, dovecot, mail_user, monkeypatch):
    for i in range(3):
        mail_user.deliver(email(f"Question {i}"))
    box = make_mailbox(app_env, dovecot, mail_user)
    assert fetch(app_env, box)["new"] == 3
    sent = []
    original = IMAPClient.fetch

    def counting_fetch(self, messages, data, modifiers=None):
        sent.append(data)
        return original(self, messages, data, modifiers)

    monkeypatch.setattr(IMAPClient, "fetch", counting_fetch)
    again = fetch(app_env, box)
    assert again["state"] == "ok"
    assert again["new"] == 0
    assert again["fetch_commands"] == 0
    assert sent == []  # an unchanged mailbox costs a SELECT, no FETCH
    assert counts(app_env, box)["cases"] == 3
    # new mail after the first fetch comes in, and only it is read
    mail_user.deliver(email("Question 3"))
    third = fetch(app_env, box)
    assert third["new"] == 1
    assert counts(app_env, box)["cases"] == 4
    assert runs(app_env, box)[-1].total == 1


def test_uidvalidity_change_gives_no_duplicates(app_env, dovecot, mail_user):
    for i in range(4):
        mail_user.deliver(email(f"Before reset {i}"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch(app_env, box)
    dovecot.set_uidvalidity_change(mail_user.email)
    mail_user.deliver(email("After reset"))
    result = fetch(app_env, box)
    assert result["state"] == "ok"
    assert result["new"] == 1
    assert "UIDVALIDITY changed" in runs(app_env, box)[-1].notes
    got = counts(app_env, box)
    assert got["raw"] == 5
    assert got["cases"] == 5
    assert got["messages"] == 5
    assert fetch(app_env, box)["fetch_commands"] == 0  # the new cursor holds


@pytest.fixture
def imap_flags(dovecot, test_ca):
    def read(user) -> dict[int, tuple]:
        with IMAPClient(
            "127.0.0.1",
            port=dovecot.imaps_port,
            ssl=True,
            ssl_context=tls_context(str(test_ca.ca_pem)),
        ) as client:
            client.login(user.email, user.password)
            client.select_folder("INBOX", readonly=True)
            uids = client.search("ALL")
            return {uid: data[b"FLAGS"] for uid, data in client.fetch(uids, ["FLAGS"]).items()}

    return read


@pytest.fixture
def imap_uidvalidity(dovecot, test_ca):
    def read(user) -> int:
        with IMAPClient(
            "127.0.0.1",
            port=dovecot.imaps_port,
            ssl=True,
            ssl_context=tls_context(str(test_ca.ca_pem)),
        ) as client:
            client.login(user.email, user.password)
            return client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"]

    return read


def test_mark_as_read_off_leaves_messages_unread(app_env, dovecot, mail_user, imap_flags):
    for i in range(3):
        mail_user.deliver(email(f"Unread {i}"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch(app_env, box)
    flags = imap_flags(mail_user)
    assert len(flags) == 3
    assert all(b"\\Seen" not in f for f in flags.values())


def test_mark_as_read_on_marks_them_after_commit(app_env, dovecot, mail_user, imap_flags):
    for i in range(2):
        mail_user.deliver(email(f"Read {i}"))
    box = make_mailbox(app_env, dovecot, mail_user, mark_as_read=True)
    fetch(app_env, box)
    assert all(b"\\Seen" in f for f in imap_flags(mail_user).values())
    assert not any(r.server_pending for r in raws(app_env, box))


def test_delete_after_fetch_removes_them_from_the_server(app_env, dovecot, mail_user, imap_flags):
    for i in range(3):
        mail_user.deliver(email(f"Delete me {i}"))
    box = make_mailbox(app_env, dovecot, mail_user, delete_after_fetch=True, max_message_bytes=5000)
    mail_user.deliver(email("Too big to delete", body="x" * 6000 + "\n"))
    fetch(app_env, box)
    left = imap_flags(mail_user)
    assert len(left) == 1  # the too-large one stays: it was never downloaded
    assert counts(app_env, box)["cases"] == 3


def test_a_pending_delete_left_by_a_crash_is_done_by_the_next_run(
    app_env, dovecot, mail_user, imap_flags
):
    for i in range(2):
        mail_user.deliver(email(f"Crash before delete {i}"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch(app_env, box)  # stored, delete was off: as if the worker died right after the commit
    with new_session(app_env["DATABASE_URL"]) as db:
        for row in db.exec(select(RawMessage)).all():
            row.server_pending = True
            db.add(row)
        db.commit()
    update_mailbox(app_env, box, delete_after_fetch=True)
    result = fetch(app_env, box)
    assert result["new"] == 0
    assert imap_flags(mail_user) == {}
    assert counts(app_env, box)["cases"] == 2


def test_backlog_is_flagged_until_the_first_fetch_completes(app_env, dovecot, mail_user):
    mail_user.deliver(email("Old mail"))
    box = make_mailbox(app_env, dovecot, mail_user, fetching_enabled=False, setup_complete=False)
    with new_session(app_env["DATABASE_URL"]) as db:
        assert turn_on_fetching(db, db.get(Mailbox, box)) is not None  # enqueued (run here instead)
    fetch(app_env, box)
    mail_user.deliver(email("New mail"))
    fetch(app_env, box)
    by_subject = {r.header_subject: r.backlog for r in raws(app_env, box)}
    assert by_subject == {"Old mail": True, "New mail": False}
    assert [
        m.backlog
        for c in cases_by_subject(app_env).values()
        for m in messages_of(app_env, c.id)
        if m.subject == "Old mail"
    ] == [True]


def test_fetch_now_enqueues_once_and_the_worker_fetches(app_env, dovecot, mail_user, run_worker):
    mail_user.deliver(email("Via the queue"))
    box = make_mailbox(app_env, dovecot, mail_user)
    with new_session(app_env["DATABASE_URL"]) as db:
        first = request_fetch(db, box, app_env["REDIS_URL"], app_env["RQ_QUEUE"])
        second = request_fetch(db, box, app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    assert first is not None
    assert second is None  # queued already: no second job
    run_worker()
    queue = get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    job = Job.fetch(first, connection=queue.connection)
    assert job.meta["progress"] == {"done": 1, "total": 1}
    assert job.return_value()["new"] == 1
    status = _status(app_env, box)
    assert status.messages_fetched == 1
    assert status.last_error is None
    assert not status.queued
    assert status.next_fetch_at > status.last_fetch_ok_at
    assert not status.stale


def _status(env, box_id):
    with new_session(env["DATABASE_URL"]) as db:
        return mailbox_status(db, db.get(Mailbox, box_id))


def test_a_failing_mailbox_records_the_error_and_others_still_fetch(
    app_env, dovecot, mail_user, run_worker
):
    other = dovecot.new_user()
    other.deliver(email("For the good mailbox"))
    bad = make_mailbox(app_env, dovecot, mail_user)
    update_mailbox(app_env, bad, password_enc=None)  # no password: a classified auth error
    good = make_mailbox(app_env, dovecot, other)
    with new_session(app_env["DATABASE_URL"]) as db:
        for box_id in (bad, good):
            request_fetch(db, box_id, app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    run_worker()
    failed = mailbox(app_env, bad)
    assert failed.last_fetch_error_kind == "auth"
    assert failed.last_fetch_error_advice
    assert failed.fetch_failures == 1
    assert failed.next_fetch_due_at > utcnow()
    assert runs(app_env, bad)[-1].state == "error"
    assert runs(app_env, bad)[-1].error
    assert counts(app_env, good)["cases"] == 1
    assert mailbox(app_env, good).last_fetch_error is None


def test_status_shows_the_stale_badge_and_first_fetch_progress(
    app_env, dovecot, mail_user, monkeypatch
):
    monkeypatch.setenv("MAILCHANNEL_FETCH_BATCH_SIZE", "2")
    for i in range(5):
        mail_user.deliver(email(f"Progress {i}"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch(app_env, box)
    run = runs(app_env, box)[-1]
    assert run.first_run
    assert run.done == 5
    assert run.total == 5
    assert run.fetch_commands >= 3
    assert not _status(app_env, box).stale
    update_mailbox(app_env, box, last_fetch_ok_at=utcnow() - timedelta(minutes=4))
    assert _status(app_env, box).stale  # nothing fetched successfully for 3 intervals


def test_pointing_the_mailbox_at_another_account_starts_a_new_backlog(
    app_env, dovecot, mail_user, imap_uidvalidity
):
    from webapp import crypto

    mail_user.deliver(email("First account"))
    box = make_mailbox(app_env, dovecot, mail_user, fetching_enabled=False)
    with new_session(app_env["DATABASE_URL"]) as db:
        turn_on_fetching(db, db.get(Mailbox, box), redis_url="")
    fetch(app_env, box)
    other = dovecot.new_user()
    for i in range(2):
        other.deliver(email(f"Second account {i}"))
    # Dovecot's UIDVALIDITY is a timestamp: two accounts made in the same second share it.
    with new_session(app_env["DATABASE_URL"]) as db:
        for model in (RawMessage, FetchCursor):
            for row in db.exec(select(model)).all():
                row.uidvalidity = imap_uidvalidity(other)
                db.add(row)
        db.commit()
    update_mailbox(
        app_env,
        box,
        username=other.email,
        email_address=other.email,
        email_key=other.email,
        password_enc=crypto.encrypt(other.password),
        setup_complete=False,
    )
    with new_session(app_env["DATABASE_URL"]) as db:
        turn_on_fetching(db, db.get(Mailbox, box), redis_url="")  # Continue after Mailbox Setup
    assert fetch(app_env, box)["new"] == 2
    other.deliver(email("Second account, new"))
    fetch(app_env, box)
    backlog = {r.header_subject: r.backlog for r in raws(app_env, box)}
    assert backlog == {
        "First account": True,
        "Second account 0": True,
        "Second account 1": True,
        "Second account, new": False,
    }


def test_deleting_a_mailbox_keeps_its_cases(app_env, dovecot, mail_user):
    mail_user.deliver(email("Outlives its mailbox"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch(app_env, box)
    with new_session(app_env["DATABASE_URL"]) as db:
        db.delete(db.get(Mailbox, box))  # what the Delete page does
        db.commit()
        assert db.exec(select(RawMessage)).all() == []
        case = db.exec(select(Case)).one()
        message = db.exec(select(Message)).one()
        assert case.mailbox_id is None
        assert message.raw_message_id is None
        assert message.case_id == case.id
