"""Email Filtering before a message becomes a case, against the real Dovecot, RQ and SMTP capture.

Each option on and off: block and allow rules, Allow New Case, Create New Contact
(held, released, discarded), mail from our own mailbox; automated mail (an
out-of-office, a bounce) never gets an automatic mail; a bounce of our own mail lands
on its case; every decision is recorded and shown on the held and filtered pages.
"""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from tests.helpers.databases import COVERED, fresh_database, migrate, postgres_answers
from tests.helpers.mailboxes import (
    AUTO_ACK_TEMPLATE,
    deliver_and_fetch,
    desk,
    fetch,
    send_due,
    update_mailbox,
)
from tests.helpers.messages import AUTHSERV, bounce, email, parsed, verified
from tests.helpers.rows import (
    all_cases,
    case_of_raw,
    contact,
    contact_keys,
    held_of,
    held_rows,
    outbox_rows,
    raw_by_subject,
    store,
)
from tests.helpers.web import ADMIN_EMAIL, csrf_from
from webapp.db import new_session
from webapp.models import (
    Case,
    Contact,
    EmailTemplate,
    HeldMessage,
    Mailbox,
    Message,
)
from webapp.services import contacts as contact_service
from webapp.services.ingest import release
from webapp.services.ingest.rows import process_raw
from webapp.services.outgoing import notify

# -- Sender Email Address Filter ----------------------------------------------------


def test_a_block_rule_filters_the_message_and_creates_nothing(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = desk(app_env, dovecot, mail_user, smtp_server,
               sender_filter="block: *@spam.example\nblock: mallory@evil.example")  # fmt: skip
    spam = deliver_and_fetch(app_env, box, mail_user, "Cheap pills", sender="Sp <x@Spam.Example>")
    evil = deliver_and_fetch(app_env, box, mail_user, "Hello", sender="MALLORY@evil.example")
    fine = deliver_and_fetch(app_env, box, mail_user, "A question", sender="ada@example.org")
    for raw in (spam, evil):
        assert raw.state == "ignored"
        assert raw.error.startswith("filtered: ")
        assert "Sender Email Address Filter blocks" in raw.error
        held = held_of(app_env, raw.id)
        assert held.state == "filtered"
        assert held.reason == "blocked"
        assert case_of_raw(app_env, raw.id) is None
    assert "block: *@spam.example" in held_of(app_env, spam.id).detail
    assert fine.state == "done"
    assert case_of_raw(app_env, fine.id) is not None
    assert contact_keys(app_env) == ["ada@example.org"]  # blocked senders became no contact
    # the filtered page says why; the mailbox's fetch log names the reason too
    page = admin.get("/filtered").get_data(as_text=True)
    assert "Cheap pills" in page
    assert "Blocked sender" in page
    assert "block: *@spam.example" in page
    assert (
        admin.get(f"/held/raw/{spam.id}")
        .headers["Location"]
        .endswith(f"/held/{held_of(app_env, spam.id).id}")
    )


def test_block_wins_over_allow_and_over_a_known_contact(app_env, dovecot, mail_user, smtp_server):
    box = desk(app_env, dovecot, mail_user, smtp_server)
    first = deliver_and_fetch(app_env, box, mail_user, "Before the rule",
                              sender="bob@partner.example", message_id="<bob1@x>")  # fmt: skip
    assert first.state == "done"  # bob is a contact now
    update_mailbox(app_env, box,
                   sender_filter="allow: *@partner.example\nblock: bob@partner.example")  # fmt: skip
    again = deliver_and_fetch(
        app_env, box, mail_user, "After the rule", sender="bob@partner.example"
    )
    assert again.state == "ignored"
    assert held_of(app_env, again.id).reason == "blocked"
    # a reply into bob's own case is blocked too: block wins over everything
    reply = deliver_and_fetch(app_env, box, mail_user, "Re: Before the rule",
                              sender="bob@partner.example", in_reply_to="<bob1@x>")  # fmt: skip
    assert reply.state == "ignored"
    assert held_of(app_env, reply.id).reason == "blocked"
    # the allow rule still lets the rest of the domain in
    carl = deliver_and_fetch(app_env, box, mail_user, "From carl", sender="carl@partner.example")
    assert carl.state == "done"


def test_an_allow_rule_makes_every_other_sender_unknown(app_env, dovecot, mail_user, smtp_server):
    box = desk(app_env, dovecot, mail_user, smtp_server, create_new_contact=False,
               sender_filter="# partners only\nallow: @partner.example")  # fmt: skip
    partner = deliver_and_fetch(
        app_env, box, mail_user, "From a partner", sender="p@partner.example"
    )
    other = deliver_and_fetch(app_env, box, mail_user, "From anyone", sender="q@other.example")
    assert partner.state == "done"
    assert case_of_raw(app_env, partner.id) is not None
    assert other.state == "ignored"
    assert other.error.startswith("held: ")
    held = held_of(app_env, other.id)
    assert held.state == "held"
    assert held.reason == "unknown_sender"
    # without Create New Contact off or confirmation, an unknown sender simply becomes a contact
    update_mailbox(app_env, box, create_new_contact=True)
    third = deliver_and_fetch(app_env, box, mail_user, "Anyone again", sender="r@other.example")
    assert third.state == "done"
    assert contact(app_env, "r@other.example") is not None


# -- Allow New Case ---------------------------------------------------------------


def test_allow_new_case_off_logs_new_threads_and_keeps_replies(
    admin, app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = desk(app_env, dovecot, mail_user, smtp_server)
    opened = deliver_and_fetch(app_env, box, mail_user, "Open before", message_id="<ob@x>")
    update_mailbox(app_env, box, allow_new_case=False)
    new = deliver_and_fetch(app_env, box, mail_user, "A new thread", sender="ann@example.org")
    reply = deliver_and_fetch(app_env, box, mail_user, "Re: Open before", in_reply_to="<ob@x>")
    assert new.state == "ignored"
    assert "Allow New Case is off" in new.error
    held = held_of(app_env, new.id)
    assert held.reason == "no_new_case"
    assert held.state == "filtered"
    assert "no template is chosen" in held.mail_decision
    assert case_of_raw(app_env, reply.id).id == case_of_raw(app_env, opened.id).id
    assert len(all_cases(app_env)) == 1
    send_due(run_worker)
    assert smtp_server.messages == []  # no template chosen: nobody is told
    page = admin.get("/filtered").get_data(as_text=True)
    assert "A new thread" in page
    assert "New cases not allowed" in page


def test_allow_new_case_off_can_tell_a_person_but_never_a_machine(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    with new_session(app_env["DATABASE_URL"]) as db:
        template = EmailTemplate(name="No new cases", kind="other",
                                 subject="We cannot open a case: {{ case_subject }}",
                                 body="Hello {{ contact_name }},\n{{ mailbox_name }} takes no new requests.\n")  # fmt: skip
        db.add(template)
        db.commit()
        template_id = template.id
    box = desk(app_env, dovecot, mail_user, smtp_server, allow_new_case=False,
               no_new_case_template_id=template_id)  # fmt: skip
    person = deliver_and_fetch(app_env, box, mail_user, "Please help",
                               sender="Ann Example <ann@example.org>", message_id="<ph@x>")  # fmt: skip
    machine = deliver_and_fetch(app_env, box, mail_user, "Newsletter", sender="news@example.org",
                                extra="Precedence: bulk")  # fmt: skip
    again = deliver_and_fetch(
        app_env, box, mail_user, "Please help again", sender="ann@example.org"
    )
    send_due(run_worker)
    (sent,) = smtp_server.wait_for(1)
    msg = parsed(sent.data)
    assert sent.rcpt_tos == ["ann@example.org"]
    assert msg["Subject"] == "We cannot open a case: Please help"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<ph@x>"
    assert "Hello Ann Example," in msg.get_body(("plain",)).get_content()
    assert "notice sent" in held_of(app_env, person.id).mail_decision
    assert "automated message (Precedence: bulk)" in held_of(app_env, machine.id).mail_decision
    assert "today already" in held_of(app_env, again.id).mail_decision
    assert all_cases(app_env) == []


# -- Create New Contact -------------------------------------------------------------


def test_create_new_contact_off_holds_unknown_senders_for_release_or_discard(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = desk(app_env, dovecot, mail_user, smtp_server)
    known = deliver_and_fetch(app_env, box, mail_user, "Known first", sender="ada@example.org")
    update_mailbox(app_env, box, create_new_contact=False)
    from_known = deliver_and_fetch(app_env, box, mail_user, "Known again", sender="ADA@example.org")
    unknown = deliver_and_fetch(app_env, box, mail_user, "Who am I",
                                sender="Zoe Stranger <zoe@example.net>")  # fmt: skip
    other = deliver_and_fetch(app_env, box, mail_user, "Spam maybe", sender="sp@example.net")
    assert known.state == from_known.state == "done"  # a known contact is not "unknown"
    for raw in (unknown, other):
        assert raw.state == "ignored"
        assert "Create New Contact is off" in raw.error
        assert held_of(app_env, raw.id).state == "held"
    assert contact_keys(app_env) == ["ada@example.org"]

    page = admin.get("/held").get_data(as_text=True)
    assert "Who am I" in page
    assert "Spam maybe" in page
    assert "Unknown sender" in page
    held = held_of(app_env, unknown.id)
    detail = admin.get(f"/held/{held.id}").get_data(as_text=True)
    assert "Hello," in detail
    assert "please help." in detail  # the text, to decide on
    # Release (a plain form post, no JavaScript): a case, and the sender becomes a contact
    resp = admin.post(f"/held/{held.id}/release",
                      data={"csrf_token": csrf_from(detail), "next": "/held"})  # fmt: skip
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/held"
    case = case_of_raw(app_env, unknown.id)
    assert case is not None
    assert case.subject == "Who am I"
    zoe = contact(app_env, "zoe@example.net")
    assert zoe is not None
    assert zoe.name == "Zoe Stranger"
    assert case.contact_id == zoe.id
    released = held_of(app_env, unknown.id)
    assert released.state == "released"
    assert released.decided_by == ADMIN_EMAIL
    assert raw_by_subject(app_env, "Who am I").state == "done"
    # releasing twice does nothing more
    again = admin.post(f"/held/{held.id}/release", data={"csrf_token": csrf_from(detail)},
                       headers={"HX-Request": "true"})  # fmt: skip
    assert again.status_code == 200
    assert "released already" in again.get_data(as_text=True)
    assert len([c for c in all_cases(app_env) if c.subject == "Who am I"]) == 1
    # Discard with HTMX: the row comes back saying so
    other_held = held_of(app_env, other.id)
    resp = admin.post(f"/held/{other_held.id}/discard", data={"csrf_token": csrf_from(detail)},
                      headers={"HX-Request": "true"})  # fmt: skip
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert f'id="held-{other_held.id}"' in text
    assert "Discarded" in text
    assert held_of(app_env, other.id).state == "discarded"
    assert "discarded by" in raw_by_subject(app_env, "Spam maybe").error
    assert case_of_raw(app_env, other.id) is None
    assert "Spam maybe" in admin.get("/held?state=discarded").get_data(as_text=True)
    # the next mail from the released sender is no longer held: a contact now
    later = deliver_and_fetch(app_env, box, mail_user, "Zoe again", sender="zoe@example.net")
    assert later.state == "done"


def test_reprocess_applies_changed_settings_to_a_filtered_message(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = desk(app_env, dovecot, mail_user, smtp_server, sender_filter="block: @example.net")
    raw = deliver_and_fetch(app_env, box, mail_user, "Wrongly blocked", sender="kim@example.net")
    held = held_of(app_env, raw.id)
    assert held.state == "filtered"
    update_mailbox(app_env, box, sender_filter="")
    page = admin.get(f"/held/{held.id}").get_data(as_text=True)
    form = re.search(r'action="(/mailboxes/\d+/messages/\d+/reprocess)"', page).group(1)
    admin.post(form, data={"csrf_token": csrf_from(page)})
    assert raw_by_subject(app_env, "Wrongly blocked").state == "done"
    assert held_of(app_env, raw.id).state == "released"
    assert held_of(app_env, raw.id).decided_by == "reprocess"
    assert case_of_raw(app_env, raw.id).subject == "Wrongly blocked"


# -- Loops and automated mail -------------------------------------------------------


def test_mail_from_our_own_mailbox_is_a_loop_and_filtered(app_env, dovecot, mail_user, smtp_server):
    box = desk(app_env, dovecot, mail_user, smtp_server)
    raw = deliver_and_fetch(app_env, box, mail_user, "Looping", sender=mail_user.email.upper())
    assert raw.state == "ignored"
    assert "our own mailbox" in raw.error
    held = held_of(app_env, raw.id)
    assert held.reason == "own_mailbox"
    assert held.state == "filtered"
    assert all_cases(app_env) == []
    assert contact_keys(app_env) == []


def test_an_out_of_office_and_a_bounce_get_no_automatic_mail(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = desk(app_env, dovecot, mail_user, smtp_server, auto_ack_template_id=AUTO_ACK_TEMPLATE,
               confirm_unknown_senders=True, authserv_id=AUTHSERV)  # fmt: skip
    ooo = deliver_and_fetch(app_env, box, mail_user, "Out of office: Printer",
                            sender="ooo@example.org",
                            extra=verified() + "\r\nAuto-Submitted: auto-replied")  # fmt: skip
    stray = bounce("<not-ours@elsewhere.example>", to=mail_user.email)
    mail_user.deliver(stray)
    fetch(app_env, box)
    dsn = raw_by_subject(app_env, "Undelivered Mail Returned to Sender")
    # held silently: an automated unknown sender never gets a confirmation mail
    assert (
        "automated message (Auto-Submitted: auto-replied)" in held_of(app_env, ooo.id).mail_decision
    )
    assert held_of(app_env, dsn.id).mail_decision.startswith("held silently: automated message")
    # with confirmation off they open cases, still without an acknowledgement
    update_mailbox(app_env, box, confirm_unknown_senders=False)
    ooo2 = deliver_and_fetch(app_env, box, mail_user, "Automatic reply: Hello",
                             sender="ooo2@example.org", extra="Auto-Submitted: auto-replied")  # fmt: skip
    mail_user.deliver(bounce("<also-not-ours@elsewhere.example>", to=mail_user.email,
                             subject="Delivery Status Notification (Failure)"))  # fmt: skip
    fetch(app_env, box)
    assert case_of_raw(app_env, ooo2.id) is not None
    dsn2 = raw_by_subject(app_env, "Delivery Status Notification (Failure)")
    assert case_of_raw(app_env, dsn2.id) is not None
    assert "mailer-daemon@mx.example.net" not in contact_keys(app_env)  # a machine: no contact
    send_due(run_worker)
    assert smtp_server.messages == []
    assert outbox_rows(app_env) == []


def test_a_bounce_of_our_own_mail_lands_on_its_case(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = desk(app_env, dovecot, mail_user, smtp_server, auto_ack_template_id=AUTO_ACK_TEMPLATE)
    opened = deliver_and_fetch(app_env, box, mail_user, "Printer jammed",
                               sender="Ada <ada@badhost.example>")  # fmt: skip
    case = case_of_raw(app_env, opened.id)
    with new_session(app_env["DATABASE_URL"]) as db:
        comment = notify.post_comment(db, db.get(Case, case.id), author="agent@example.com",
                                      text="Try turning it off and on.", idempotency_key="k1")  # fmt: skip
    send_due(run_worker)
    sent = smtp_server.wait_for(2)  # the acknowledgement and the comment
    ack_id = next(parsed(m.data)["Message-ID"] for m in sent
                  if parsed(m.data)["Message-ID"] != comment.message_id)  # fmt: skip
    smtp_server.clear()
    # the comment bounces: its headers come back in a text/rfc822-headers part
    mail_user.deliver(
        bounce(comment.message_id, to=mail_user.email, recipient="ada@badhost.example")
    )
    fetch(app_env, box)
    # the acknowledgement bounces: only in the outbox (no conversation message), whole message back
    mail_user.deliver(bounce(ack_id, to=mail_user.email, recipient="ada@badhost.example",
                             part="message/rfc822", subject="Returned mail: see transcript"))  # fmt: skip
    fetch(app_env, box)
    first = raw_by_subject(app_env, "Undelivered Mail Returned to Sender")
    second = raw_by_subject(app_env, "Returned mail: see transcript")
    assert case_of_raw(app_env, first.id).id == case.id
    assert case_of_raw(app_env, second.id).id == case.id
    assert len(all_cases(app_env)) == 1
    with new_session(app_env["DATABASE_URL"]) as db:
        message = db.exec(select(Message).where(Message.raw_message_id == first.id)).one()
        assert message.automated.startswith(("Auto-Submitted", "null Return-Path"))
    send_due(run_worker)
    assert smtp_server.messages == []  # nothing answers a bounce


def test_backlog_messages_are_held_silently(app_env, dovecot, mail_user, smtp_server, run_worker):
    mail_user.deliver(email("Old mail", sender="old@example.org", to=mail_user.email,
                            extra=verified()))  # fmt: skip
    box = desk(app_env, dovecot, mail_user, smtp_server, initial_fetch_done=False,
               confirm_unknown_senders=True, authserv_id=AUTHSERV)  # fmt: skip
    fetch(app_env, box)
    raw = raw_by_subject(app_env, "Old mail")
    held = held_of(app_env, raw.id)
    assert raw.backlog
    assert held.state == "held"
    assert held.backlog
    assert "before fetching was turned on" in held.mail_decision
    send_due(run_worker)
    assert smtp_server.messages == []


# -- the pages ----------------------------------------------------------------------


def test_the_pages_need_a_login_and_csrf(app, admin, app_env, dovecot, mail_user, smtp_server):
    box = desk(app_env, dovecot, mail_user, smtp_server, create_new_contact=False)
    raw = deliver_and_fetch(app_env, box, mail_user, "Hold me", sender="h@example.net")
    held = held_of(app_env, raw.id)
    stranger = app.test_client()
    for url in ("/held", "/filtered", f"/held/{held.id}", "/contacts/"):
        resp = stranger.get(url)
        assert resp.status_code == 302
        assert "/auth/login" in resp.headers["Location"]
    assert stranger.post(f"/held/{held.id}/release").status_code in (302, 400)
    # logged in, but without the CSRF token: refused, nothing released
    assert admin.post(f"/held/{held.id}/release").status_code == 400
    assert held_of(app_env, raw.id).state == "held"
    assert [h.state for h in held_rows(app_env)] == ["held"]
    nav = admin.get("/held").get_data(as_text=True)
    assert '<a href="/held" aria-current="page">Held</a>' in nav  # the page's own menu item
    assert '<a href="/contacts/">Contacts</a>' in nav


# -- PostgreSQL: the same decisions with its dialect (ON CONFLICT, RETURNING, LIKE) --------


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_answers(), reason="no PostgreSQL answers on 127.0.0.1:5432")
def test_filtering_release_and_merge_on_postgresql(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("SECRET_KEY", "pg-secret")
    with fresh_database() as url:
        migrate(url)
        with new_session(url) as db:
            box = Mailbox(name="Support", email_address="support@example.com",
                          email_key="support@example.com", confirm_unknown_senders=True,
                          authserv_id=AUTHSERV, smtp_host="127.0.0.1", smtp_security="none",
                          sender_filter="block: @spam.example")  # fmt: skip
            db.add(box)
            db.commit()
            blocked = _ingest(db, box, email("Spam", sender="x@spam.example"))
            first = _ingest(db, box, email("Hi", sender="Pat <pat@example.org>", extra=verified()))
            second = _ingest(db, box, email("Hi again", sender="pat@example.org", extra=verified()))
            held = db.exec(select(HeldMessage).where(HeldMessage.raw_message_id == first)).one()
            again = db.exec(select(HeldMessage).where(HeldMessage.raw_message_id == second)).one()
            assert (
                db.exec(select(HeldMessage).where(HeldMessage.raw_message_id == blocked))
                .one()
                .reason
                == "blocked"
            )
            assert held.mail_decision.startswith("confirmation mail sent")
            assert "today already" in again.mail_decision
            case = release.confirm_sender(db, held.id, by="the sender (confirmation link)")
            assert case.subject == "Hi"
            db.expire_all()
            assert db.get(HeldMessage, again.id).state == "released"
            pat = db.exec(select(Contact).where(Contact.email_key == "pat@example.org")).one()
            other = Contact(email="pat@home.example", email_key="pat@home.example", name="")
            db.add(other)
            db.commit()
            assert [r.contact.email_key for r in contact_service.list_contacts(db, "PAT@").rows] == [
                "pat@example.org", "pat@home.example"]  # fmt: skip
            contact_service.merge(db, pat.id, other.id)
            assert contact_service.aliases(db, pat.id) == ["pat@home.example"]
    COVERED.add("PostgreSQL")


def _ingest(db, box: Mailbox, raw: bytes) -> int:
    raw_id = store(db, box, raw)
    process_raw(db, raw_id)
    return raw_id
