"""The outbox: retries with backoff, a visible 5xx, a SIGKILL mid-send, Send again, XOAUTH2, the form, the API."""

from __future__ import annotations

import base64
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from sqlalchemy import update
from sqlmodel import col, select

from tests.helpers.mailboxes import (
    open_case,
    replying_desk,
    send_due,
    update_mailbox,
)
from tests.helpers.messages import parsed
from tests.helpers.rows import outbox_rows
from tests.helpers.web import case_page, comment, csrf_from, mailbox_data
from tests.servers.dovecot import free_ports
from tests.servers.smtp import CapturingSMTPServer
from webapp import crypto
from webapp.config import PROJECT_ROOT
from webapp.db import new_session, utcnow
from webapp.models import Mailbox, OutboxMessage
from webapp.queue import get_queue
from webapp.services.access import users
from webapp.services.outgoing import delivery, outbox
from worker.jobs import dispatch_outbox


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("MAILCHANNEL_OUTBOX_BACKOFF_SECONDS", "0.3")


def _api(client, app, path: str) -> dict:
    with new_session(app.config["SETTINGS"].database_url) as db:
        _, token = users.create_token(db, "outbox test")
    resp = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


# -- retries and failures ------------------------------------------------------------


def test_451_then_250_sends_exactly_once_after_a_backoff(
    admin, app_env, dovecot, mail_user, smtp_server, run_worker, monkeypatch
):
    smtp_server.set_responses(["451 4.3.0 Try again later"])  # the first retry is a minute away
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "Retry me.")
    run_worker()
    (row,) = outbox_rows(app_env)
    assert row.state == "queued"
    assert row.attempts == 1
    assert row.server_code == 451
    assert "Try again later" in row.server_reply
    assert "Next attempt at" in row.last_error
    assert smtp_server.messages == []
    assert smtp_server.attempts == 1
    assert "451" in case_page(admin, case.id)  # the temporary failure is visible meanwhile
    polled = admin.get(f"/outbox/{row.id}/row", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert polled.startswith(f'<tr class="outbox-row state-queued" id="outbox-{row.id}"')
    assert 'hx-trigger="every 3s"' in polled  # the row refreshes itself until it settles

    dispatch_outbox()  # not due yet: no job, no attempt
    run_worker()
    assert smtp_server.attempts == 1

    _make_due(app_env, row.id)  # the minute has passed
    send_due(run_worker)
    (row,) = outbox_rows(app_env)
    assert row.state == "sent"
    assert row.attempts == 2
    assert row.server_code == 250
    assert len(smtp_server.wait_for(1)) == 1
    assert smtp_server.attempts == 2
    send_due(run_worker)  # nothing left to do: still one message
    assert len(smtp_server.messages) == 1


def _make_due(app_env, outbox_id: int) -> None:
    """Move a row's next attempt to now, as if its backoff had passed (no wall-clock wait)."""
    with new_session(app_env["DATABASE_URL"]) as db:
        db.exec(
            update(OutboxMessage)
            .where(col(OutboxMessage.id) == outbox_id)
            .values(next_attempt_at=utcnow())
        )
        db.commit()


def test_backoff_doubles_and_is_capped():
    assert [delivery.retry_delay(n).total_seconds() for n in (1, 2, 3, 8)] == [60, 120, 240, 3600]


def test_550_stops_with_the_servers_answer_on_the_case_page_and_in_the_api(
    admin, app, app_env, dovecot, mail_user, smtp_server, run_worker, fast_retries
):
    smtp_server.set_responses(["550 5.1.1 <ada@example.org>: Recipient address rejected"])
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "This will bounce.")
    run_worker()
    (row,) = outbox_rows(app_env)
    assert row.state == "failed"
    assert row.attempts == 1
    assert row.server_code == 550
    time.sleep(0.4)
    send_due(run_worker)  # a 5xx is never retried
    assert smtp_server.attempts == 1
    assert outbox_rows(app_env)[0].state == "failed"

    page = case_page(admin, case.id)
    assert 'class="badge outbox-failed">Failed<' in page
    assert "Recipient address rejected" in page
    assert "550" in page
    assert "not delivered for sure" in page
    assert ">Send again</button>" in page
    log = admin.get(f"/outbox/?mailbox={box}").get_data(as_text=True)  # the mailbox's send log
    assert "Recipient address rejected" in log
    assert f"case #{case.number}" in log

    assert "Recipient address rejected" in _mailbox_fragment(admin, box)  # for the mailbox page
    api = _api(admin, app, "/api/v1/outbox?state=failed")
    assert api["total"] == 1
    item = api["items"][0]
    assert item["state"] == "failed"
    assert item["server_code"] == 550
    assert "Recipient address rejected" in item["server_reply"]
    assert "refused" in item["error"]

    # after the cause is fixed, Send again delivers the same message
    token = csrf_from(page)
    resp = admin.post(
        f"/outbox/{row.id}/send-again", data={"csrf_token": token, "next": f"/cases/{case.id}"}
    )
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/cases/{case.id}"
    run_worker()
    (sent,) = smtp_server.wait_for(1)
    assert parsed(sent.data)["Message-ID"] == row.message_id
    assert outbox_rows(app_env)[0].state == "sent"


def _mailbox_fragment(admin, box_id: int) -> str:
    """The Outgoing mail section of the mailbox page."""
    page = admin.get(f"/mailboxes/{box_id}").get_data(as_text=True)
    start = page.index('<section class="mailbox-outbox"')
    html = page[start : page.index("</section>", start)]
    assert "1 email failed or may not have been delivered" in html
    return html


def test_the_mailbox_login_is_used_when_smtp_username_and_password_are_blank(
    admin, app_env, dovecot, mail_user, run_worker, test_ca
):
    tls = (test_ca.cert_pem, test_ca.key_pem)
    with CapturingSMTPServer(auth=(mail_user.email, mail_user.password), tls=tls) as server:
        box = replying_desk(app_env, dovecot, mail_user, server, smtp_security="starttls")
        case = open_case(app_env, box, mail_user)
        comment(admin, case.id, "With the mailbox's own login.")
        run_worker()
        assert len(server.wait_for(1)) == 1
        assert outbox_rows(app_env)[0].state == "sent"
    # a relay with its own account: SMTP Username and SMTP Password win
    with CapturingSMTPServer(auth=("relay", "relay-pass"), tls=tls) as server:
        crypto.configure([app_env["ENCRYPTION_KEY"]])
        update_mailbox(app_env, box, smtp_port=server.port, smtp_username="relay",
                       smtp_password_enc=crypto.encrypt("relay-pass"))  # fmt: skip
        comment(admin, case.id, "With the relay's login.")
        run_worker()
        assert len(server.wait_for(1)) == 1
        assert outbox_rows(app_env)[1].state == "sent"
        update_mailbox(app_env, box, smtp_password_enc=crypto.encrypt("wrong"))
        comment(admin, case.id, "Refused login.")
        run_worker()
        row = outbox_rows(app_env)[2]
        assert row.state == "queued"  # retried later
        assert row.last_error_kind == "auth"
        assert len(server.messages) == 1


def test_two_jobs_for_one_message_send_it_once(
    admin, app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "Once.")
    (row,) = outbox_rows(app_env)
    queue = get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    queue.enqueue("worker.jobs.send_outbox_message", row.id)  # RQ delivering a job twice
    run_worker()
    assert len(smtp_server.wait_for(1)) == 1
    assert smtp_server.attempts == 1


def test_enqueue_is_idempotent_and_keeps_the_built_message(
    app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    with new_session(app_env["DATABASE_URL"]) as db:
        mailbox = db.get(Mailbox, box)
        kwargs = dict(to_addr="bob@example.org", to_name="Bob", subject="Task", text="Do it.",
                      kind="task", idempotency_key="task:1:assigned")  # fmt: skip
        first = outbox.enqueue(db, mailbox, **kwargs)
        again = outbox.enqueue(db, mailbox, **{**kwargs, "text": "changed"})
        db.commit()
        assert again.id == first.id
        assert again.text == "Do it."
        assert first.message_id.startswith("<")
        assert first.message_id.endswith(f"@{mail_user.email.split('@')[1]}>")
        msg = parsed(first.raw)
        assert msg["Message-ID"] == first.message_id
        assert msg["Subject"] == "Task"  # no case: no token
        assert msg.get_body(("plain",)).get_content().startswith("##- Please type your reply above")


def test_automatic_mail_over_the_ceiling_is_suppressed(app_env, dovecot, mail_user, smtp_server):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    with new_session(app_env["DATABASE_URL"]) as db:
        mailbox = db.get(Mailbox, box)
        made = [
            outbox.enqueue(
                db,
                mailbox,
                to_addr="Robot@Example.org",
                to_name="",
                subject="Confirm",
                text="Click.",
                kind="confirmation",
                idempotency_key=f"c:{i}",
                auto_submitted="auto-replied",
            )  # fmt: skip
            for i in range(21)
        ]
        db.commit()
        assert [r.state for r in made].count("queued") == 20
        assert made[-1].state == "suppressed"
        assert "ceiling reached: 20" in made[-1].last_error
        # a human's comment is not automatic mail: never counted, never suppressed
        human = outbox.enqueue(db, mailbox, to_addr="robot@example.org", to_name="", subject="Hi",
                               text="Hi.", kind="comment", idempotency_key="h:1")  # fmt: skip
        assert human.state == "queued"


# -- a worker killed mid-send --------------------------------------------------------


def _kill_worker(process: subprocess.Popen, app_env: dict) -> None:
    """SIGKILL the work-horse sending the row (its pid is in the holder) and the worker."""
    with new_session(app_env["DATABASE_URL"]) as db:
        for row in db.exec(select(OutboxMessage).where(OutboxMessage.state == "sending")):
            os.kill(int(row.holder.split(":")[1]), signal.SIGKILL)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_sigkill_after_the_server_accepted_gives_no_duplicate_and_an_uncertain_row(
    admin, app, app_env, dovecot, mail_user, smtp_server, run_worker, monkeypatch
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "Sent just before the crash.")
    env = {
        **os.environ,
        "MAILCHANNEL_TEST_PAUSE_AFTER_SEND": "60",  # accepted, then stuck before "sent"
        "MAILCHANNEL_OUTBOX_LEASE_SECONDS": "1",
    }
    worker = subprocess.Popen(
        [str(PROJECT_ROOT / ".venv/bin/rq"), "worker", "--url", app_env["REDIS_URL"],
         "--path", str(PROJECT_ROOT), "--burst", app_env["RQ_QUEUE"]],
        cwd=PROJECT_ROOT, env=env, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        smtp_server.wait_for(1, timeout=60)  # the server has the message
        assert outbox_rows(app_env)[0].state == "sending"
    finally:
        _kill_worker(worker, app_env)
    time.sleep(1.1)  # the dead worker's lease runs out

    send_due(run_worker)  # the tick finds the row: uncertain, and NOT sent again
    send_due(run_worker)
    (row,) = outbox_rows(app_env)
    assert row.state == "uncertain"
    assert "not known whether the server accepted it" in row.last_error
    assert len(smtp_server.messages) == 1

    page = case_page(admin, case.id)
    assert 'class="badge outbox-uncertain">Uncertain<' in page
    assert ">Send again</button>" in page
    assert ">Mark as sent</button>" in page
    api = _api(admin, app, "/api/v1/outbox")
    assert api["items"][0]["state"] == "uncertain"

    # a person who checked decides: Send again sends the same message once more, on purpose
    resp = admin.post(f"/outbox/{row.id}/send-again", data={"csrf_token": csrf_from(page)},
                      headers={"HX-Request": "true"})  # fmt: skip
    assert (
        resp.get_data(as_text=True)
        .lstrip()
        .startswith(f'<tr class="outbox-row state-queued" id="outbox-{row.id}"')
    )
    run_worker()
    first, second = smtp_server.wait_for(2)
    assert parsed(first.data)["Message-ID"] == parsed(second.data)["Message-ID"] == row.message_id
    assert outbox_rows(app_env)[0].state == "sent"


def test_mark_as_sent_settles_an_uncertain_row(admin, app_env, dovecot, mail_user, smtp_server):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    comment(admin, case.id, "Maybe sent.")
    with new_session(app_env["DATABASE_URL"]) as db:  # as a dead worker leaves it
        row = db.exec(select(OutboxMessage)).one()
        row.state, row.holder, row.lease_until = (
            "sending",
            "host:1:x",
            utcnow() - timedelta(seconds=1),
        )
        db.add(row)
        db.commit()
        assert outbox.recover_interrupted(db) == 1
    page = case_page(admin, case.id)
    resp = admin.post(f"/outbox/{row.id}/mark-sent", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 303
    (row,) = outbox_rows(app_env)
    assert row.state == "sent"
    assert "Marked as sent by admin@example.com" in row.last_error
    assert smtp_server.messages == []


# -- OAuth: XOAUTH2 with the mailbox's token, one forced refresh -----------------------


class _IntrospectingXOAuth:
    """AUTH XOAUTH2 accepted when the OAuth server says the token is active for the user."""

    def __init__(self, introspect_url: str) -> None:
        self.introspect_url = introspect_url
        self.logins: list[tuple[str, bool]] = []
        self.received: list[Envelope] = []

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = base64.b64decode(args[1]).decode()
        fields = dict(part.split("=", 1) for part in blob.split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        answer = requests.post(self.introspect_url, data={"token": token}, timeout=5).json()
        ok = bool(answer.get("active")) and answer.get("username") == fields.get("user")
        self.logins.append((fields.get("user", ""), ok))
        if ok:
            return AuthResult(success=True)
        await server.challenge_auth('{"status":"401","schemes":"bearer"}')
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def xoauth_smtp(oauth_server, test_ca) -> Iterator[tuple[_IntrospectingXOAuth, int]]:
    """STARTTLS with the test CA's certificate, then AUTH XOAUTH2 before any mail."""
    handler, port = _IntrospectingXOAuth(oauth_server.introspect_url), free_ports(1)[0]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(test_ca.cert_pem), str(test_ca.key_pem))
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=context,
                            auth_required=True)  # fmt: skip
    controller.start()
    yield handler, port
    controller.stop()


def test_an_oauth_mailbox_sends_with_xoauth2_and_refreshes_a_revoked_token_once(
    admin,
    app,
    app_env,
    oauth_server,
    oauth_dovecot,
    oauth_mail_user,
    oauth_client,
    run_worker,
    xoauth_smtp,
):
    from tests.helpers.oauth import authorized_box

    handler, port = xoauth_smtp
    box_id = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    with new_session(app_env["DATABASE_URL"]) as db:
        box = db.get(Mailbox, box_id)
        box.smtp_host, box.smtp_port, box.smtp_security = "127.0.0.1", port, "starttls"
        db.add(box)
        db.commit()
        kwargs = dict(to_addr="ada@example.org", to_name="Ada", subject="Hi", text="Hello.",
                      kind="task", auto_submitted=None)  # fmt: skip
        first = outbox.enqueue(db, box, idempotency_key="oauth:1", **kwargs)
        db.commit()
    send_due(run_worker)
    assert outbox_rows(app_env, id=first.id)[0].state == "sent"
    assert handler.logins == [(oauth_mail_user.email, True)]
    assert oauth_server.refresh_count == 0

    oauth_server.expire_access_tokens(oauth_mail_user.email)  # revoked early; expiry says fine
    with new_session(app_env["DATABASE_URL"]) as db:
        second = outbox.enqueue(db, db.get(Mailbox, box_id), idempotency_key="oauth:2", **kwargs)
        db.commit()
    send_due(run_worker)
    assert outbox_rows(app_env, id=second.id)[0].state == "sent"
    assert [ok for _, ok in handler.logins] == [True, False, True]
    assert oauth_server.refresh_count == 1
    assert len(handler.received) == 2


# -- the Outgoing mail fieldset ------------------------------------------------------

SMTP_LABELS = ["SMTP Host", "SMTP Port", "SMTP Security", "SMTP Username", "SMTP Password"]


def test_the_form_has_an_outgoing_mail_fieldset_with_its_labels(admin):
    page = admin.get("/mailboxes/new").get_data(as_text=True)
    assert "<legend>Outgoing mail</legend>" in page
    for label in SMTP_LABELS:
        match = re.search(r'<label for="([^"]+)">' + re.escape(label) + "</label>", page)
        assert match, label
        assert re.search(r'<(input|select)[^>]*\bid="' + re.escape(match.group(1)) + '"', page)
    options = re.search(r'<select[^>]*id="smtp_security".*?</select>', page, re.S).group(0)
    assert re.findall(r">([^<]+)</option>", options) == ["STARTTLS", "SSL/TLS", "None"]


def test_security_none_is_refused_for_a_remote_host_and_warned_for_loopback(admin, app_env):
    data = mailbox_data(admin, smtp_host="smtp.example.com", smtp_port="25", smtp_security="none")
    resp = admin.post("/mailboxes/new", data=data)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    block = re.search(
        r'<div class="field[^"]*has-error[^"]*" id="field-smtp_security">(.*?)</div>', page, re.S
    )
    assert block
    assert "only accepted for a server on this machine" in block.group(1)
    frag = admin.post("/mailboxes/validate/smtp_security", data=data,
                      headers={"HX-Request": "true"}).get_data(as_text=True)  # fmt: skip
    assert frag.startswith('<div class="field has-error" id="field-smtp_security">')

    data = mailbox_data(admin, smtp_host="127.0.0.1", smtp_port="2525", smtp_security="none")
    resp = admin.post("/mailboxes/new", data=data)
    assert resp.status_code == 302
    box_id = int(re.search(r"/mailboxes/(\d+)/", resp.headers["Location"]).group(1))
    page = admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True)
    assert "No encryption: mail and the SMTP password cross the connection in plain text" in page
    with new_session(app_env["DATABASE_URL"]) as db:
        box = db.get(Mailbox, box_id)
        assert box.smtp_host == "127.0.0.1"
        assert box.smtp_port == 2525
        assert box.smtp_security == "none"


def test_bad_smtp_host_and_port_are_shown_next_to_the_field(admin):
    for field, value, message in [
        ("smtp_host", "http://smtp.example.com", "Enter a host name such as smtp.example.com"),
        ("smtp_port", "70000", "Enter a port between 1 and 65535."),
    ]:
        page = admin.post("/mailboxes/new", data=mailbox_data(admin, **{field: value})).get_data(
            as_text=True
        )
        block = re.search(
            r'<div class="field[^"]*has-error[^"]*" id="field-' + field + r'">(.*?)</div>',
            page,
            re.S,
        )
        assert block, field
        assert message in block.group(1), field


def test_the_smtp_password_is_encrypted_never_shown_and_kept_when_blank(admin, app, app_env):
    secret = "smtp-Secret-9876"
    data = mailbox_data(admin, smtp_host="smtp.example.com", smtp_port="587",
                        smtp_security="starttls", smtp_username="relay-user", smtp_password=secret)  # fmt: skip
    resp = admin.post("/mailboxes/new", data=data)
    box_id = int(re.search(r"/mailboxes/(\d+)/", resp.headers["Location"]).group(1))
    with new_session(app_env["DATABASE_URL"]) as db:
        stored = db.get(Mailbox, box_id).smtp_password_enc
    assert stored
    assert secret not in stored
    crypto.configure([app_env["ENCRYPTION_KEY"]])
    assert crypto.decrypt(stored) == secret
    page = admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True)
    assert secret not in page
    field = re.search(r'<div class="field" id="field-smtp_password">(.*?)</div>', page, re.S).group(
        1
    )
    assert re.search(r'<input[^>]*id="smtp_password"[^>]*type="password" value="">', field)
    assert "A value is saved (not shown)" in field
    admin.post(f"/mailboxes/{box_id}/edit", data={**data, "smtp_password": ""})
    with new_session(app_env["DATABASE_URL"]) as db:
        assert db.get(Mailbox, box_id).smtp_password_enc == stored
    # the API never shows it either
    api = _api(admin, app, "/api/v1/mailboxes")
    item = api["items"][0]
    assert item["smtp_host"] == "smtp.example.com"
    assert item["smtp_password_set"] is True
    assert secret not in str(api)
    assert stored not in str(api)


@pytest.mark.parametrize(
    "provider, host", [("gmail", "smtp.gmail.com"), ("outlook", "smtp.office365.com")]
)
def test_presets_fill_in_outgoing_mail(admin, provider, host):
    data = mailbox_data(admin, provider=provider, smtp_host="", smtp_port="", smtp_security="none")
    frag = admin.post(
        "/mailboxes/form/connection",
        data=data,
        headers={"HX-Request": "true", "HX-Trigger-Name": "provider"},
    ).get_data(as_text=True)
    page = admin.post("/mailboxes/new", data={**data, "action": "preset"}).get_data(as_text=True)
    for html in (frag, page):
        assert re.search(r'<input[^>]*id="smtp_host"[^>]*value="' + re.escape(host) + '"', html)
        assert re.search(r'<input[^>]*id="smtp_port"[^>]*value="587"', html)
        assert re.search(r'<option selected value="starttls">STARTTLS</option>', html)


# -- the API -------------------------------------------------------------------------


def test_api_outbox_lists_messages_with_their_message_id_as_in_the_header(
    admin, app, app_env, dovecot, mail_user, smtp_server, run_worker
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    for text in ("One.", "Two."):
        comment(admin, case.id, text)
    run_worker()
    sent = [parsed(m.data) for m in smtp_server.wait_for(2)]
    api = _api(admin, app, "/api/v1/outbox")
    assert api["total"] == 2
    assert api["page"] == 1
    assert len(api["items"]) == 2
    for item in api["items"]:
        assert {"to", "subject", "state", "message_id"} <= set(item)
        assert item["to"] == "ada@example.org"
        assert item["state"] == "sent"
        assert item["subject"] == f"Re: [#{case.number}] Printer jammed"
        assert re.fullmatch(r"<[^<>\s]+@[^<>\s]+>", item["message_id"])
    assert {i["message_id"] for i in api["items"]} == {m["Message-ID"] for m in sent}
    assert _api(admin, app, "/api/v1/outbox?page=2")["items"] == []
    assert admin.get("/api/v1/outbox").status_code == 401
