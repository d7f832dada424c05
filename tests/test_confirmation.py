"""Prevent spam by sending a confirmation: end to end with Dovecot, RQ and the SMTP capture.

An unknown, authenticated sender's message is held and the sender gets one mail with
a signed, expiring link (and a reply address); the public page shows a button and
changes nothing on GET; POST releases the message into a case and makes the contact.
No challenge to forged or unauthenticated senders, to machines, or twice a day.
"""

from __future__ import annotations

import time

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.helpers.mailboxes import deliver_and_fetch, desk, fetch, send_due, update_mailbox
from tests.helpers.messages import AUTHSERV, email, failed, link_in, parsed, verified
from tests.helpers.rows import (
    all_cases,
    case_of_raw,
    contact,
    contact_keys,
    held_of,
    outbox_rows,
    raw_by_subject,
)
from tests.helpers.web import csrf_from
from webapp.services.outgoing import confirm


def _box(app_env, dovecot, mail_user, smtp_server, **fields) -> int:
    return desk(app_env, dovecot, mail_user, smtp_server, confirm_unknown_senders=True,
                authserv_id=AUTHSERV, **fields)  # fmt: skip


def _challenge(smtp_server, run_worker, count: int = 1):
    send_due(run_worker)
    return smtp_server.wait_for(count)


def test_the_confirmation_flow_end_to_end(
    app, app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = _box(app_env, dovecot, mail_user, smtp_server)
    raw = deliver_and_fetch(app_env, box, mail_user, "My laptop is broken",
                            sender="Eve Example <eve@example.org>", message_id="<eve1@example.org>",
                            extra=verified())  # fmt: skip
    assert raw.state == "ignored"
    assert raw.error.startswith("held: ")
    assert "; confirmation mail sent to eve@example.org" in raw.error  # the fetch log says it all
    held = held_of(app_env, raw.id)
    assert held.state == "held"
    assert held.reason == "confirmation"
    assert held.mail_decision.startswith("confirmation mail sent to eve@example.org (spf=pass")
    assert all_cases(app_env) == []
    assert contact_keys(app_env) == []

    (sent,) = _challenge(smtp_server, run_worker)
    msg = parsed(sent.data)
    assert sent.rcpt_tos == ["eve@example.org"]
    assert msg["From"] == f"Support <{mail_user.email}>"  # replying to it comes back to us
    assert msg["Subject"] == "Please confirm your message: My laptop is broken"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<eve1@example.org>"
    assert msg["Message-ID"] == held_of(app_env, raw.id).mail_message_id
    body = msg.get_body(("plain",)).get_content()
    link = link_in(body)  # built from EXTERNAL_URL
    assert "reply to this email" in body
    path = link.removeprefix("http://127.0.0.1:5000")

    # a second message the same day: held, no second challenge
    second = deliver_and_fetch(app_env, box, mail_user, "Also my phone", sender="eve@example.org",
                               extra=verified())  # fmt: skip
    assert held_of(app_env, second.id).mail_decision == (
        "held silently: this sender got a confirmation mail today already"
    )
    send_due(run_worker)
    assert len(smtp_server.messages) == 1
    assert len(outbox_rows(app_env, kind="confirmation")) == 1

    # the public page, without a login: GET shows a button and changes nothing
    sender_browser = app.test_client()
    page = sender_browser.get(path)
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Confirm your message" in text
    assert f'action="{path}"' in text
    assert 'method="post"' in text
    assert page.headers["Cache-Control"] == "no-store"
    assert sender_browser.get(path).status_code == 200  # a link scanner may GET it again
    assert held_of(app_env, raw.id).state == "held"
    assert all_cases(app_env) == []
    assert contact_keys(app_env) == []

    # POST releases it into a case and creates the contact (name from the From header)
    resp = sender_browser.post(path, data={"csrf_token": csrf_from(text)})
    assert resp.status_code == 200
    assert "Thank you" in resp.get_data(as_text=True)
    case = case_of_raw(app_env, raw.id)
    assert case is not None
    assert case.subject == "My laptop is broken"
    eve = contact(app_env, "eve@example.org")
    assert eve is not None
    assert eve.name == "Eve Example"
    assert case.contact_id == eve.id
    assert held_of(app_env, raw.id).state == "released"
    assert held_of(app_env, raw.id).decided_by == "the sender (confirmation link)"
    assert raw_by_subject(app_env, "My laptop is broken").state == "done"
    # the sender wrote twice before confirming once: both messages come through
    assert case_of_raw(app_env, second.id) is not None

    # the link again: already confirmed, nothing doubled
    again = sender_browser.post(path, data={"csrf_token": csrf_from(text)})
    assert again.status_code == 200
    assert "Already confirmed" in again.get_data(as_text=True)
    assert len(all_cases(app_env)) == 2
    # a known contact now: the next message goes straight to a case
    later = deliver_and_fetch(app_env, box, mail_user, "Thanks", sender="eve@example.org")
    assert later.state == "done"


def test_a_forged_or_damaged_link_is_refused(
    app, app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = _box(app_env, dovecot, mail_user, smtp_server)
    raw = deliver_and_fetch(app_env, box, mail_user, "Forge me", sender="f@example.org",
                            extra=verified())  # fmt: skip
    held = held_of(app_env, raw.id)
    client = app.test_client()
    forged = confirm.make_token(held.id, "not-our-secret")
    for token in (forged, "garbage", confirm.make_token(held.id, "test-secret-key") + "x"):
        resp = client.get(f"/confirm/{token}")
        assert resp.status_code == 404
        assert "not valid" in resp.get_data(as_text=True)
    token = forged
    page = client.get(f"/confirm/{confirm.make_token(held.id, 'test-secret-key')}").get_data(
        as_text=True
    )
    resp = client.post(f"/confirm/{token}", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 404
    assert held_of(app_env, raw.id).state == "held"
    assert all_cases(app_env) == []
    # a genuine signature for a message that never got a link (held silently) opens nothing
    silent = deliver_and_fetch(app_env, box, mail_user, "Silent", sender="s@example.org")
    held_silently = held_of(app_env, silent.id)
    assert held_silently.mail_sent_at is None
    resp = client.get(f"/confirm/{confirm.make_token(held_silently.id, 'test-secret-key')}")
    assert resp.status_code == 404
    assert "not valid" in resp.get_data(as_text=True)


class _TwoHoursAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 7200


def test_a_link_signed_before_the_confirmation_mail_is_refused(app, app_env, dovecot, mail_user,
                                                               smtp_server):  # fmt: skip
    # e.g. made for a row that had the same id before (SQLite may reuse ids of deleted rows)
    box = _box(app_env, dovecot, mail_user, smtp_server)
    raw = deliver_and_fetch(app_env, box, mail_user, "Fresh", sender="n@example.org",
                            extra=verified())  # fmt: skip
    old = URLSafeTimedSerializer("test-secret-key", salt=confirm.SALT, signer=_TwoHoursAgo)
    resp = app.test_client().get(f"/confirm/{old.dumps(held_of(app_env, raw.id).id)}")
    assert resp.status_code == 404
    assert "not valid" in resp.get_data(as_text=True)


def test_an_expired_link_says_so(app, app_env, dovecot, mail_user, smtp_server, run_worker):
    box = _box(app_env, dovecot, mail_user, smtp_server, confirmation_hours=1)
    raw = deliver_and_fetch(app_env, box, mail_user, "Too late", sender="late@example.org",
                            extra=verified())  # fmt: skip
    held = held_of(app_env, raw.id)
    old = URLSafeTimedSerializer("test-secret-key", salt=confirm.SALT, signer=_TwoHoursAgo)
    token = old.dumps(held.id)
    client = app.test_client()
    resp = client.get(f"/confirm/{token}")
    assert resp.status_code == 410
    assert "expired" in resp.get_data(as_text=True)
    # the sweep (an RQ job, as the scheduler runs it) marks the hold expired after its time
    from webapp.queue import get_queue

    fresh = link_in(parsed(_challenge(smtp_server, run_worker)[0].data)
                    .get_body(("plain",)).get_content()).removeprefix("http://127.0.0.1:5000")  # fmt: skip
    page = client.get(fresh)
    assert page.status_code == 200
    with_past_expiry(app_env, held.id)
    get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"]).enqueue("worker.jobs.expire_held_messages")
    run_worker()
    assert held_of(app_env, raw.id).state == "expired"
    assert "never confirmed" in raw_by_subject(app_env, "Too late").error
    resp = client.post(fresh, data={"csrf_token": csrf_from(page.get_data(as_text=True))})
    assert resp.status_code == 410
    assert "expired" in resp.get_data(as_text=True)
    assert all_cases(app_env) == []


def with_past_expiry(app_env, held_id: int) -> None:
    from datetime import timedelta

    from webapp.db import new_session, utcnow
    from webapp.models import HeldMessage

    with new_session(app_env["DATABASE_URL"]) as db:
        held = db.get(HeldMessage, held_id)
        held.expires_at = utcnow() - timedelta(minutes=1)
        db.add(held)
        db.commit()


def test_no_challenge_without_our_servers_authentication(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = _box(app_env, dovecot, mail_user, smtp_server)
    failing = deliver_and_fetch(app_env, box, mail_user, "SPF fails", sender="a@example.org",
                                extra=failed())  # fmt: skip
    other_server = deliver_and_fetch(app_env, box, mail_user, "Someone else says pass",
                                     sender="b@example.org",
                                     extra=verified(authserv="mx.attacker.example"))  # fmt: skip
    unaligned = deliver_and_fetch(app_env, box, mail_user, "Passes for another domain",
                                  sender="c@example.org",
                                  extra=verified(sender_domain="elsewhere.example"))  # fmt: skip
    none = deliver_and_fetch(app_env, box, mail_user, "No header at all", sender="d@example.org")
    for raw in (failing, other_server, unaligned, none):
        held = held_of(app_env, raw.id)
        assert held.state == "held"
        assert held.reason == "confirmation"
        assert held.mail_decision.startswith("held silently: SPF/DKIM did not pass"), (
            held.mail_decision
        )
        assert held.mail_sent_at is None
    assert "reports dmarc=fail" in held_of(app_env, failing.id).mail_decision
    assert (
        f"no Authentication-Results header from {AUTHSERV}"
        in held_of(app_env, other_server.id).mail_decision
    )
    # no authserv-id configured: no header is trusted at all
    update_mailbox(app_env, box, authserv_id="")
    unset = deliver_and_fetch(app_env, box, mail_user, "Nobody configured", sender="e@example.org",
                              extra=verified())  # fmt: skip
    assert "no authserv-id is configured" in held_of(app_env, unset.id).mail_decision
    send_due(run_worker)
    assert smtp_server.messages == []
    assert all_cases(app_env) == []


def test_no_challenge_to_machines(app_env, dovecot, mail_user, smtp_server, run_worker):
    box = _box(app_env, dovecot, mail_user, smtp_server)
    list_mail = deliver_and_fetch(app_env, box, mail_user, "Weekly digest", sender="list@example.org",
                                  extra=verified() + "\r\nList-Id: <digest.example.org>")  # fmt: skip
    robot = deliver_and_fetch(app_env, box, mail_user, "Your invoice", sender="no-reply@example.org",
                              extra=verified())  # fmt: skip
    assert "List-Id" in held_of(app_env, list_mail.id).mail_decision
    assert "machine address" in held_of(app_env, robot.id).mail_decision
    send_due(run_worker)
    assert smtp_server.messages == []


def test_replying_to_the_confirmation_mail_releases_but_an_auto_reply_does_not(
    app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = _box(app_env, dovecot, mail_user, smtp_server)
    raw = deliver_and_fetch(app_env, box, mail_user, "Need a hand", sender="Ray <ray@example.org>",
                            extra=verified())  # fmt: skip
    (sent,) = _challenge(smtp_server, run_worker)
    challenge_id = parsed(sent.data)["Message-ID"]
    # the sender's out-of-office answers the confirmation mail: that confirms nothing
    ooo = deliver_and_fetch(app_env, box, mail_user, "Auto: Please confirm your message",
                            sender="ray@example.org", in_reply_to=challenge_id,
                            extra=verified() + "\r\nAuto-Submitted: auto-replied")  # fmt: skip
    assert held_of(app_env, raw.id).state == "held"
    assert held_of(app_env, ooo.id).mail_decision.startswith("held silently")
    # someone else quoting the Message-ID confirms nothing either
    other = deliver_and_fetch(app_env, box, mail_user, "Re: Please confirm", sender="x@example.org",
                              in_reply_to=challenge_id)  # fmt: skip
    assert held_of(app_env, raw.id).state == "held"
    assert held_of(app_env, other.id).reason == "confirmation"
    # the sender's own reply releases the message into a case
    reply = deliver_and_fetch(app_env, box, mail_user, "Re: Please confirm your message: Need a hand",
                              sender="ray@example.org", in_reply_to=challenge_id,
                              extra=verified())  # fmt: skip
    assert reply.state == "ignored"
    reply_row = held_of(app_env, reply.id)
    assert reply_row.reason == "confirmation_reply"
    assert reply_row.state == "filtered"
    assert "was released into case" in reply_row.detail
    case = case_of_raw(app_env, raw.id)
    assert case is not None
    assert case.subject == "Need a hand"
    assert contact(app_env, "ray@example.org").name == "Ray"
    assert held_of(app_env, raw.id).decided_by == "the sender (reply to the confirmation mail)"
    assert raw_by_subject(app_env, "Need a hand").state == "done"


def test_a_contact_or_an_allowed_sender_is_not_held(app_env, dovecot, mail_user, smtp_server):
    box = _box(app_env, dovecot, mail_user, smtp_server, sender_filter="allow: @trusted.example")
    update_mailbox(app_env, box, confirm_unknown_senders=False)
    deliver_and_fetch(app_env, box, mail_user, "Before", sender="known@example.org")
    update_mailbox(app_env, box, confirm_unknown_senders=True)
    known = deliver_and_fetch(app_env, box, mail_user, "Known", sender="Known@Example.org")
    allowed = deliver_and_fetch(app_env, box, mail_user, "Allowed", sender="t@trusted.example")
    assert known.state == allowed.state == "done"
    # a cc of a case answering in its thread takes part: not held either
    mail_user.deliver(email("Thread", sender="known@example.org", to=mail_user.email,
                            cc="colleague@example.org", message_id="<t1@x>"))  # fmt: skip
    fetch(app_env, box)
    cc_reply = deliver_and_fetch(app_env, box, mail_user, "Re: Thread",
                                 sender="colleague@example.org", in_reply_to="<t1@x>")  # fmt: skip
    assert cc_reply.state == "done"
