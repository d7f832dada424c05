"""After fetching, against the real Dovecot: mark as read, move to a folder, delete; all after the commit."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient

from tests.helpers.mailboxes import fetch, make_mailbox, on_server, update_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import counts, raws


def _two(user) -> None:
    for i in range(2):
        user.deliver(email(f"Invoice {i}"))


def test_mark_as_read_leaves_them_in_inbox_marked_seen(app_env, dovecot, test_ca, mail_user):
    _two(mail_user)
    box = make_mailbox(app_env, dovecot, mail_user, mark_as_read=True)
    fetch(app_env, box)
    inbox = on_server(dovecot, test_ca, mail_user)
    assert sorted(inbox) == ["Invoice 0", "Invoice 1"]
    assert all(b"\\Seen" in flags for flags in inbox.values())


def test_move_creates_the_folder_and_the_messages_leave_inbox(app_env, dovecot, test_ca, mail_user):
    _two(mail_user)
    box = make_mailbox(app_env, dovecot, mail_user, move_to_folder="Fetched")
    assert on_server(dovecot, test_ca, mail_user, "Fetched") is None  # not there before
    result = fetch(app_env, box)
    assert result["state"] == "ok"
    assert sorted(on_server(dovecot, test_ca, mail_user, "Fetched")) == ["Invoice 0", "Invoice 1"]
    assert on_server(dovecot, test_ca, mail_user) == {}
    assert counts(app_env, box)["cases"] == 2
    assert not any(r.server_pending for r in raws(app_env, box))


def test_move_into_an_existing_folder_keeps_what_was_there(app_env, dovecot, test_ca, mail_user):
    mail_user.deliver(email("Already filed"), folder="Done")
    _two(mail_user)
    box = make_mailbox(app_env, dovecot, mail_user, move_to_folder="Done")
    fetch(app_env, box)
    assert sorted(on_server(dovecot, test_ca, mail_user, "Done")) == [
        "Already filed",
        "Invoice 0",
        "Invoice 1",
    ]


@pytest.fixture
def imap_commands(monkeypatch):
    """The move commands the fetch sends; offers(False) hides the server's MOVE capability."""
    sent: list[str] = []
    for command in ("move", "copy", "uid_expunge"):
        original = getattr(IMAPClient, command)

        def record(self, *args, _original=original, _command=command):
            sent.append(_command)
            return _original(self, *args)

        monkeypatch.setattr(IMAPClient, command, record)
    has_capability = IMAPClient.has_capability

    def offers(move: bool) -> list[str]:
        if not move:
            monkeypatch.setattr(
                IMAPClient,
                "has_capability",
                lambda self, name: name != "MOVE" and has_capability(self, name),
            )
        return sent

    return offers


def test_a_server_with_move_gets_uid_move(app_env, dovecot, mail_user, imap_commands):
    sent = imap_commands(True)
    _two(mail_user)
    fetch(app_env, make_mailbox(app_env, dovecot, mail_user, move_to_folder="Fetched"))
    assert sent == ["move"]


def test_without_move_the_server_gets_copy_and_expunge(
    app_env, dovecot, test_ca, mail_user, imap_commands
):
    sent = imap_commands(False)
    _two(mail_user)
    box = make_mailbox(app_env, dovecot, mail_user, move_to_folder="Fetched")
    fetch(app_env, box)
    assert sent == ["copy", "uid_expunge"]
    assert sorted(on_server(dovecot, test_ca, mail_user, "Fetched")) == ["Invoice 0", "Invoice 1"]
    assert on_server(dovecot, test_ca, mail_user) == {}


def test_delete_removes_them_from_the_server(app_env, dovecot, test_ca, mail_user):
    _two(mail_user)
    box = make_mailbox(app_env, dovecot, mail_user, delete_after_fetch=True)
    fetch(app_env, box)
    assert on_server(dovecot, test_ca, mail_user) == {}
    assert counts(app_env, box)["cases"] == 2


def test_a_move_left_pending_by_a_crash_is_done_by_the_next_run(
    app_env, dovecot, test_ca, mail_user
):
    from sqlmodel import select

    from webapp.db import new_session
    from webapp.models import RawMessage

    _two(mail_user)
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch(app_env, box)  # stored with Leave on server: as if the worker died after the commit
    with new_session(app_env["DATABASE_URL"]) as db:
        for row in db.exec(select(RawMessage)).all():
            row.server_pending = True
            db.add(row)
        db.commit()
    update_mailbox(app_env, box, move_to_folder="Fetched")
    assert fetch(app_env, box)["new"] == 0
    assert sorted(on_server(dovecot, test_ca, mail_user, "Fetched")) == ["Invoice 0", "Invoice 1"]


def test_nothing_moves_when_the_commit_fails(app_env, dovecot, test_ca, mail_user, monkeypatch):
    from webapp.services.fetching import store

    def broken_store(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(store, "store_batch", broken_store)
    _two(mail_user)
    box = make_mailbox(app_env, dovecot, mail_user, move_to_folder="Fetched")
    with pytest.raises(RuntimeError):
        fetch(app_env, box)
    assert sorted(on_server(dovecot, test_ca, mail_user)) == ["Invoice 0", "Invoice 1"]
