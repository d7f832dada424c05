"""Auto Acknowledgement: once per new case, never to machines or for backlog, hourly at most, no loops."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from tests.helpers.mailboxes import (
    AUTO_ACK_TEMPLATE,
    desk,
    fetch,
    make_mailbox,
    open_case,
    send_due,
    smtp_fields,
)
from tests.helpers.messages import MARKER, email, first_text_line, parsed, text_body
from tests.helpers.rows import all_cases, outbox_rows, raws
from webapp.db import new_session, utcnow
from webapp.models import Mailbox, OutboxMessage

CORPUS = Path(__file__).parent / "data" / "mail"


def _desk(app_env, dovecot, mail_user, smtp_server, **fields) -> int:
    return desk(app_env, dovecot, mail_user, smtp_server, auto_ack_template_id=AUTO_ACK_TEMPLATE,
                **fields)  # fmt: skip


def test_a_new_case_is_acknowledged_once_and_a_reply_is_not(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = _desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user, subject="VPN down", message_id="<vpn1@ada.example>")
    send_due(run_worker)
    (sent,) = smtp_server.wait_for(1)
    assert sent.rcpt_tos == ["ada@example.org"]
    msg = parsed(sent.data)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Subject"] == f"[#{case.number}] We received your message: VPN down"
    assert msg["In-Reply-To"] == "<vpn1@ada.example>"
    assert first_text_line(msg) == MARKER
    assert f"Your message is now case {case.number}" in text_body(msg)
    (row,) = outbox_rows(app_env)
    assert row.kind == "auto_ack"
    assert row.case_id == case.id
    assert row.state == "sent"

    # the contact answers on the case (after the hour, even): a comment, no acknowledgement
    _age_outbox(app_env, hours=2)
    mail_user.deliver(email("Re: VPN down", sender="ada@example.org", to=mail_user.email,
                            in_reply_to="<vpn1@ada.example>"))  # fmt: skip
    fetch(app_env, box)
    send_due(run_worker)
    assert len(all_cases(app_env)) == 1
    assert len(smtp_server.messages) == 1
    assert len(outbox_rows(app_env)) == 1


def _age_outbox(app_env, hours: float) -> None:
    with new_session(app_env["DATABASE_URL"]) as db:
        for row in db.exec(select(OutboxMessage)):
            row.created_at = utcnow() - timedelta(hours=hours)
            db.add(row)
        db.commit()


def test_at_most_one_acknowledgement_per_sender_and_mailbox_per_hour(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = _desk(app_env, dovecot, mail_user, smtp_server)
    open_case(app_env, box, mail_user, subject="First question")
    open_case(app_env, box, mail_user, subject="Second question", sender="ADA@example.org")
    open_case(app_env, box, mail_user, subject="From Bob", sender="bob@example.org")
    send_due(run_worker)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(2)) == [
        "ada@example.org",
        "bob@example.org",
    ]
    assert len(all_cases(app_env)) == 3
    _age_outbox(app_env, hours=1.01)  # an hour later Ada gets one again
    open_case(app_env, box, mail_user, subject="Third question")
    send_due(run_worker)
    assert len(smtp_server.wait_for(3)) == 3


def test_backlog_gets_no_acknowledgement(app_env, dovecot, mail_user, smtp_server, run_worker):
    mail_user.deliver(email("Old mail from last year", to=mail_user.email))
    box = _desk(app_env, dovecot, mail_user, smtp_server, initial_fetch_done=False)
    fetch(app_env, box)  # the first fetch: everything already there is backlog
    send_due(run_worker)
    assert len(all_cases(app_env)) == 1
    assert outbox_rows(app_env) == []
    assert smtp_server.messages == []
    open_case(app_env, box, mail_user, subject="New after turning on")
    send_due(run_worker)
    assert len(smtp_server.wait_for(1)) == 1


def test_out_of_office_and_bounces_get_no_acknowledgement(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = _desk(app_env, dovecot, mail_user, smtp_server)
    for name in ("auto_reply.eml", "bounce.eml"):
        mail_user.deliver((CORPUS / name).read_bytes())
    mail_user.deliver(email("I am away", sender="carl@example.org", to=mail_user.email,
                            extra="Auto-Submitted: auto-replied"))  # fmt: skip
    fetch(app_env, box)
    send_due(run_worker)
    assert {r.state for r in raws(app_env, box)} <= {"done", "ignored"}  # kept and processed …
    assert outbox_rows(app_env) == []
    assert smtp_server.messages == []  # … but nobody is answered


def test_no_acknowledgement_without_a_template_or_outgoing_mail(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = desk(app_env, dovecot, mail_user, smtp_server, auto_ack_template_id=None)
    open_case(app_env, box, mail_user)
    with new_session(app_env["DATABASE_URL"]) as db:
        mailbox = db.get(Mailbox, box)
        mailbox.auto_ack_template_id, mailbox.smtp_host = AUTO_ACK_TEMPLATE, ""
        db.add(mailbox)
        db.commit()
    open_case(app_env, box, mail_user, subject="Another", sender="bob@example.org")
    send_due(run_worker)
    assert outbox_rows(app_env) == []
    assert smtp_server.messages == []


def test_the_ceiling_of_automatic_mail_stops_acknowledgements(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = _desk(app_env, dovecot, mail_user, smtp_server)
    from webapp.services.outgoing import outbox

    with new_session(app_env["DATABASE_URL"]) as db:
        mailbox = db.get(Mailbox, box)
        for i in range(20):  # 20 automatic mails to Ada in the last two hours (confirmations)
            outbox.enqueue(db, mailbox, to_addr="ada@example.org", to_name="", subject="c",
                           text="c", kind="confirmation", idempotency_key=f"c{i}",
                           auto_submitted="auto-replied")  # fmt: skip
        db.commit()
    open_case(app_env, box, mail_user)
    assert [r.kind for r in outbox_rows(app_env)].count("auto_ack") == 0


def test_our_two_mailboxes_mailing_each_other_do_not_loop(
    app_env, dovecot, smtp_server, run_worker
):
    user_a, user_b = dovecot.new_user("desk-a"), dovecot.new_user("desk-b")
    box_a = _desk(app_env, dovecot, user_a, smtp_server, name="Desk A")
    box_b = make_mailbox(app_env, dovecot, user_b, name="Desk B", initial_fetch_done=True,
                         auto_ack_template_id=AUTO_ACK_TEMPLATE, **smtp_fields(smtp_server))  # fmt: skip
    # A customer writes to A and is acknowledged
    open_case(app_env, box_a, user_a, subject="Help", sender="ada@example.org")
    send_due(run_worker)
    assert len(smtp_server.wait_for(1)) == 1

    # Desk B writes to desk A by hand (no automation headers at all): still no acknowledgement
    user_a.deliver(email("Question from the other desk", sender=f"Desk B <{user_b.email}>",
                         to=user_a.email))  # fmt: skip
    fetch(app_env, box_a)
    send_due(run_worker)
    assert len(outbox_rows(app_env, mailbox_id=box_a)) == 1

    # A's acknowledgement, as it would arrive in B's inbox (say Ada forwarded by redirect):
    # B does not answer it
    ack = smtp_server.messages[0].data
    assert parsed(ack)["From"].addresses[0].addr_spec == user_a.email
    user_b.deliver(ack)
    fetch(app_env, box_b)
    send_due(run_worker)
    assert outbox_rows(app_env, mailbox_id=box_b) == []
    assert [r.state for r in raws(app_env, box_b)] in (
        ["done"],
        ["ignored"],
    )  # kept, never answered
    assert len(smtp_server.messages) == 1
