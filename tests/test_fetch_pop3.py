"""POP3 fetching against the real Dovecot: UIDL for what is new, DELE only after commit."""

from __future__ import annotations

import poplib

import pytest

from tests.helpers.mailboxes import fetch, make_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import cases_by_subject, counts, messages_of, raws
from webapp.mail.connect import tls_context


@pytest.fixture
def pop3_count(dovecot, test_ca):
    def count(user) -> int:
        pop = poplib.POP3_SSL(
            "127.0.0.1", dovecot.pop3s_port, context=tls_context(str(test_ca.ca_pem))
        )
        try:
            pop.user(user.email)
            pop.pass_(user.password)
            return pop.stat()[0]
        finally:
            pop.quit()

    return count


def test_pop3s_fetch_threads_and_reads_only_new_mail(app_env, dovecot, mail_user, pop3_count):
    mail_user.deliver(email("Pop question", sender="dave@example.org", message_id="<p1@x>"))
    mail_user.deliver(
        email(
            "Re: Pop question", sender="dave@example.org", message_id="<p2@x>", in_reply_to="<p1@x>"
        )
    )
    box = make_mailbox(app_env, dovecot, mail_user, protocol="pop3s")
    first = fetch(app_env, box)
    assert first["state"] == "ok"
    assert first["new"] == 2
    assert first["fetch_commands"] == 2
    case = cases_by_subject(app_env)["Pop question"]
    assert [m.message_id for m in messages_of(app_env, case.id)] == ["<p1@x>", "<p2@x>"]
    assert all(r.uidl for r in raws(app_env, box))
    assert all(r.uid is None for r in raws(app_env, box))
    again = fetch(app_env, box)
    assert again["new"] == 0
    assert again["fetch_commands"] == 0  # UIDL says nothing is new: no RETR
    mail_user.deliver(email("Another pop question", sender="erin@example.org"))
    assert fetch(app_env, box)["new"] == 1
    assert counts(app_env, box)["cases"] == 2
    assert pop3_count(mail_user) == 3  # nothing deleted


def test_pop3_delete_after_fetch_deletes_after_commit(app_env, dovecot, mail_user, pop3_count):
    for i in range(3):
        mail_user.deliver(email(f"Pop delete {i}"))
    box = make_mailbox(
        app_env,
        dovecot,
        mail_user,
        protocol="pop3s",
        delete_after_fetch=True,
        max_message_bytes=4000,
    )
    mail_user.deliver(email("Pop too big", body="y" * 5000 + "\n"))
    result = fetch(app_env, box)
    assert result["new"] == 4
    assert result["failed"] == 1
    assert pop3_count(mail_user) == 1  # only the too-large message, never downloaded, stays
    assert counts(app_env, box)["cases"] == 3
    assert fetch(app_env, box)["new"] == 0


def test_pop3_message_left_on_the_server_by_a_crash_is_deleted_next_time(
    app_env, dovecot, mail_user, pop3_count
):
    mail_user.deliver(email("Pop crash"))
    box = make_mailbox(app_env, dovecot, mail_user, protocol="pop3s")
    fetch(app_env, box)  # committed, not deleted: as if the worker died before QUIT
    from tests.helpers.mailboxes import update_mailbox

    update_mailbox(app_env, box, delete_after_fetch=True)
    result = fetch(app_env, box)
    assert result["new"] == 0
    assert pop3_count(mail_user) == 0
    assert counts(app_env, box)["raw"] == 1
