"""Mailbox Setup against the real Dovecot, with the verify job run by a real RQ worker."""

from __future__ import annotations

import re
import socket

import pytest
from sqlmodel import select

from tests.helpers.rows import mailbox_of
from tests.helpers.web import csrf_from, mailbox_data
from webapp.db import new_session, utcnow
from webapp.models import Mailbox

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hello %d\r\n\r\nbody\r\n"


def _save(admin, dovecot, user, **overrides) -> tuple[int, str]:
    fields = {
        "email_address": user.email,
        "password": user.password,
        "host": "127.0.0.1",
        "port": str(dovecot.imaps_port),
        **overrides,
    }
    data = mailbox_data(admin, **fields)
    resp = admin.post("/mailboxes/new", data=data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    location = resp.headers["Location"]
    return int(re.search(r"/mailboxes/(\d+)/setup", location).group(1)), location


def test_save_then_setup_shows_the_message_count(admin, app, dovecot, mail_user, run_worker):
    for i in range(3):
        mail_user.deliver(MESSAGE % i)
    box_id, setup_url = _save(admin, dovecot, mail_user)
    waiting = admin.get(setup_url).get_data(as_text=True)
    assert "Waiting for a worker" in waiting
    assert 'hx-trigger="every 1s"' in waiting  # HTMX polls the progress
    assert '<meta http-equiv="refresh"' in waiting  # and without JS the page refreshes itself
    run_worker()
    page = admin.get(setup_url).get_data(as_text=True)
    assert "3 messages in this mailbox" in page
    assert "every 1s" not in page  # polling stops once the check is done
    # HTMX gets only the progress block
    frag = admin.get(setup_url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert frag.lstrip().startswith('<section id="setup-progress"')
    assert "3 messages" in frag
    # Continue keeps the configuration and turns the mailbox on
    token = csrf_from(page)
    resp = admin.post(f"/mailboxes/{box_id}/continue", data={"csrf_token": token})
    assert resp.status_code == 302
    box = mailbox_of(app, box_id)
    assert box.setup_complete
    assert box.enabled
    assert box.status == "active"


def test_pop3s_counts_with_stat(admin, app, dovecot, mail_user, run_worker):
    for i in range(2):
        mail_user.deliver(MESSAGE % i)
    box_id, setup_url = _save(admin, dovecot, mail_user)
    token = csrf_from(admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True))
    data = mailbox_data(
        admin,
        email_address=mail_user.email,
        password="",
        protocol="pop3s",
        host="127.0.0.1",
        port=str(dovecot.pop3s_port),
        csrf_token=token,
    )
    assert admin.post(f"/mailboxes/{box_id}/edit", data=data).status_code == 302
    run_worker()
    assert "2 messages in this mailbox" in admin.get(setup_url).get_data(as_text=True)


def test_wrong_password_says_the_login_was_rejected(admin, app, dovecot, mail_user, run_worker):
    box_id, setup_url = _save(admin, dovecot, mail_user, password="not-the-password")
    run_worker()
    page = admin.get(setup_url).get_data(as_text=True)
    box = mailbox_of(app, box_id)
    assert box.verify_state == "error"
    assert box.last_error_kind == "auth"
    assert box.last_error in page
    assert box.last_error_advice in page
    assert "not-the-password" not in page
    assert "Check again" in page
    assert "Edit settings" in page
    assert box.status == "error"


def test_wrong_port_says_the_connection_was_refused(admin, app, dovecot, mail_user, run_worker):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    box_id, setup_url = _save(admin, dovecot, mail_user)
    token = csrf_from(admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True))
    data = mailbox_data(
        admin,
        email_address=mail_user.email,
        password="",
        host="127.0.0.1",
        port=str(closed_port),
        csrf_token=token,
    )
    admin.post(f"/mailboxes/{box_id}/edit", data=data)
    run_worker()
    box = mailbox_of(app, box_id)
    assert box.last_error_kind == "connection_refused"
    assert str(closed_port) in admin.get(setup_url).get_data(as_text=True)


def test_untrusted_certificate_is_refused(admin, app, dovecot, mail_user, run_worker, monkeypatch):
    monkeypatch.delenv("MAIL_CA_BUNDLE")  # the worker no longer trusts the test CA
    box_id, setup_url = _save(admin, dovecot, mail_user)
    run_worker()
    box = mailbox_of(app, box_id)
    assert box.last_error_kind == "tls_untrusted"
    assert "MAIL_CA_BUNDLE" in box.last_error_advice or "certificate" in box.last_error.lower()


def test_back_returns_to_the_form_with_everything_kept(admin, app, dovecot, mail_user, run_worker):
    box_id, setup_url = _save(admin, dovecot, mail_user, description="kept description")
    run_worker()
    page = admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True)
    assert mail_user.email in page
    assert "kept description" in page
    assert f'value="{dovecot.imaps_port}"' in page
    assert mail_user.password not in page


def test_the_job_carries_no_secret(admin, app, dovecot, mail_user, app_env):
    from webapp.queue import get_queue

    _save(admin, dovecot, mail_user)
    queue = get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"])
    jobs = queue.get_jobs()
    assert jobs
    assert all(job.args == (jobs[0].args[0],) for job in jobs)
    assert all(isinstance(job.args[0], int) for job in jobs)
    raw = b"".join(queue.connection.hget(job.key, "data") or b"" for job in jobs)
    assert mail_user.password.encode() not in raw
    queue.empty()


def test_a_lost_verification_job_is_enqueued_again_by_the_sweep(
    admin, app, dovecot, mail_user, app_env, run_worker
):
    from datetime import timedelta

    from webapp.queue import get_queue
    from worker.jobs import sweep

    mail_user.deliver(MESSAGE % 1)
    box_id, setup_url = _save(admin, dovecot, mail_user)
    get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"]).empty()  # the job is lost
    with new_session(app_env["DATABASE_URL"]) as db:
        box = db.get(Mailbox, box_id)
        box.verify_requested_at = utcnow() - timedelta(minutes=5)
        db.add(box)
        db.commit()
    assert "No worker has picked up the check" in admin.get(setup_url).get_data(as_text=True)
    assert sweep() == 1
    run_worker()
    assert "1 message in this mailbox" in admin.get(setup_url).get_data(as_text=True)


@pytest.mark.parametrize("protocol, port_attr", [("imap", "imap_port"), ("pop3", "pop3_port")])
def test_plain_ports_upgrade_with_starttls(
    admin, app, dovecot, mail_user, run_worker, protocol, port_attr
):
    box_id, setup_url = _save(admin, dovecot, mail_user)
    token = csrf_from(admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True))
    data = mailbox_data(
        admin,
        email_address=mail_user.email,
        password="",
        protocol=protocol,
        host="127.0.0.1",
        port=str(getattr(dovecot, port_attr)),
        csrf_token=token,
    )
    admin.post(f"/mailboxes/{box_id}/edit", data=data)
    run_worker()
    box = mailbox_of(app, box_id)
    assert box.verify_state == "ok"
    assert box.plaintext_warning is False


def test_list_shows_status(admin, app, dovecot, mail_user, run_worker):
    _save(admin, dovecot, mail_user)
    run_worker()
    with new_session(app.config["SETTINGS"].database_url) as db:
        assert db.exec(select(Mailbox)).one().status == "verified"
    assert "verified" in admin.get("/mailboxes/").get_data(as_text=True)


def _set_up_disabled(admin, app, dovecot, mail_user, run_worker) -> int:
    """Saved with Enabled unchecked, verified, then Continue."""
    mail_user.deliver(MESSAGE % 1)
    box_id, setup_url = _save(admin, dovecot, mail_user, enabled=None)
    run_worker()
    token = csrf_from(admin.get(setup_url).get_data(as_text=True))
    resp = admin.post(f"/mailboxes/{box_id}/continue", data={"csrf_token": token})
    assert resp.status_code == 302
    return box_id


def test_setup_of_a_disabled_mailbox_says_continue_keeps_it_offline(
    admin, app, dovecot, mail_user, run_worker
):
    _box_id, setup_url = _save(admin, dovecot, mail_user, enabled=None)
    run_worker()
    page = admin.get(setup_url).get_data(as_text=True)
    assert "the mailbox stays offline and fetches nothing until you enable it" in page


def test_continue_keeps_a_disabled_mailbox_disabled(admin, app, dovecot, mail_user, run_worker):
    box_id = _set_up_disabled(admin, app, dovecot, mail_user, run_worker)
    assert not mailbox_of(app, box_id).enabled


def test_continue_completes_the_setup_of_a_disabled_mailbox(
    admin, app, dovecot, mail_user, run_worker
):
    box_id = _set_up_disabled(admin, app, dovecot, mail_user, run_worker)
    assert mailbox_of(app, box_id).setup_complete


def test_after_continue_a_disabled_mailbox_says_it_is_offline(
    admin, app, dovecot, mail_user, run_worker
):
    box_id = _set_up_disabled(admin, app, dovecot, mail_user, run_worker)
    page = admin.get(f"/mailboxes/{box_id}").get_data(as_text=True)
    assert "is set up but disabled: it stays offline and fetches nothing" in page
    assert "off: the mailbox is disabled" in page
    assert '<span class="badge status-disabled">disabled</span>' in page


def test_the_scheduler_never_fetches_a_disabled_mailbox(admin, app, dovecot, mail_user, run_worker):
    from worker.jobs import schedule_fetches, sweep

    box_id = _set_up_disabled(admin, app, dovecot, mail_user, run_worker)
    assert schedule_fetches() == 0
    assert sweep() == 0
    run_worker()
    assert mailbox_of(app, box_id).last_fetch_at is None
    page = admin.get(f"/mailboxes/{box_id}").get_data(as_text=True)
    assert "No fetch has run yet." in page


def test_enabling_it_later_lets_the_scheduler_fetch(admin, app, dovecot, mail_user, run_worker):
    from worker.jobs import schedule_fetches

    box_id = _set_up_disabled(admin, app, dovecot, mail_user, run_worker)
    token = csrf_from(admin.get(f"/mailboxes/{box_id}").get_data(as_text=True))
    admin.post(f"/mailboxes/{box_id}/toggle", data={"csrf_token": token})
    assert schedule_fetches() == 1
    run_worker()
    assert mailbox_of(app, box_id).last_fetch_ok_at is not None
