"""A saved secret goes only where it was meant to go: a changed Host, SMTP Host or Access
Token URL drops the secret sent there, and the form asks for it again next to the field.
(The API only reads mailboxes, so the web form is the one way to change them.)"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.helpers.mailboxes import update_mailbox
from tests.helpers.oauth import authorized_box, oauth_form
from tests.helpers.rows import mailbox_of
from tests.helpers.web import csrf_from, mailbox_data
from webapp import crypto
from webapp.db import new_session, utcnow
from webapp.models import Mailbox
from webapp.services.mailboxes import save_mailbox

OAUTH = {
    "auth_type": "oauth",
    "password": "",
    "client_id": "client-one",
    "client_secret": "client-secret-one",
    "scope": "mail",
    "auth_url": "https://login.example.com/authorize",
    "token_url": "https://login.example.com/token",
}


def _create(admin, **fields) -> int:
    data = mailbox_data(admin, **{"host": "imap.example.com", **fields})
    resp = admin.post("/mailboxes/new", data=data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return int(re.search(r"/mailboxes/(\d+)/", resp.headers["Location"]).group(1))


def _edit(admin, box: int, **fields):
    token = csrf_from(admin.get(f"/mailboxes/{box}/edit").get_data(as_text=True))
    data = mailbox_data(admin, **{"host": "imap.example.com", "csrf_token": token, **fields})
    return admin.post(f"/mailboxes/{box}/edit", data=data)


def _field(page: str, name: str) -> str:
    found = re.search(rf'<div class="field[^"]*" id="field-{name}">.*?</div>', page, re.S)
    assert found, f"no {name} field in the page"
    return found.group(0)


def _secret(app, box: int, column: str) -> str | None:
    return crypto.decrypt(getattr(mailbox_of(app, box), column))


# -- Host and the password -------------------------------------------------------------


def test_a_new_host_asks_for_the_password_again(admin, app):
    box = _create(admin, password="old-password")
    resp = _edit(admin, box, host="imap.elsewhere.example", password="")
    assert resp.status_code == 422
    field = _field(resp.get_data(as_text=True), "password")
    assert "The password was cleared because Host changed; enter it again." in field
    assert "leave blank to keep it" not in field


def test_a_refused_host_change_saves_nothing(admin, app):
    box = _create(admin, password="old-password")
    _edit(admin, box, host="imap.elsewhere.example", password="")
    assert mailbox_of(app, box).host == "imap.example.com"


def test_the_new_host_gets_the_new_password(admin, app):
    box = _create(admin, password="old-password")
    resp = _edit(admin, box, host="imap.elsewhere.example", password="new-password")
    assert resp.status_code == 302
    assert _secret(app, box, "password_enc") == "new-password"


def test_the_same_host_keeps_the_password(admin, app):
    box = _create(admin, password="old-password")
    assert _edit(admin, box, host="IMAP.example.com", password="").status_code == 302
    assert _secret(app, box, "password_enc") == "old-password"


def test_saving_a_new_host_without_a_password_drops_the_saved_one(admin, app):
    box = _create(admin, password="old-password")
    with new_session(app.config["SETTINGS"].database_url) as db:
        mailbox = db.get(Mailbox, box)
        save_mailbox(db, mailbox, {"host": "imap.elsewhere.example", "password": ""})
    assert mailbox_of(app, box).password_enc is None


# -- SMTP Host and the SMTP password ----------------------------------------------------

SMTP = {"smtp_host": "smtp.example.com", "smtp_port": "587", "smtp_security": "starttls"}


def test_a_new_smtp_host_asks_for_the_smtp_password_again(admin, app):
    box = _create(admin, smtp_password="smtp-old", **SMTP)
    resp = _edit(
        admin, box, password="", smtp_password="", **{**SMTP, "smtp_host": "smtp.b.example"}
    )
    assert resp.status_code == 422
    field = _field(resp.get_data(as_text=True), "smtp_password")
    assert "The SMTP password was cleared because SMTP Host changed; enter it again." in field


def test_the_new_smtp_host_gets_the_new_smtp_password(admin, app):
    box = _create(admin, smtp_password="smtp-old", **SMTP)
    resp = _edit(
        admin, box, password="", smtp_password="smtp-new", **{**SMTP, "smtp_host": "smtp.b.example"}
    )
    assert resp.status_code == 302
    assert _secret(app, box, "smtp_password_enc") == "smtp-new"


def test_a_new_smtp_host_does_not_get_the_mailbox_password_unasked(admin, app):
    box = _create(admin, password="mailbox-pw")  # no SMTP: sending would use this password
    resp = _edit(admin, box, password="", smtp_password="", **SMTP)
    assert resp.status_code == 422
    field = _field(resp.get_data(as_text=True), "smtp_password")
    assert "SMTP Host changed: enter the SMTP password (or the Password above) again" in field


def test_typing_the_mailbox_password_again_confirms_the_smtp_host(admin, app):
    box = _create(admin, password="mailbox-pw")
    assert _edit(admin, box, password="mailbox-pw", smtp_password="", **SMTP).status_code == 302
    assert mailbox_of(app, box).smtp_host == "smtp.example.com"


# -- Access Token URL, Client ID and the OAuth tokens ------------------------------------


@pytest.fixture
def oauth_box(admin, app_env) -> int:
    box = _create(admin, **OAUTH)
    update_mailbox(
        app_env,
        box,
        access_token_enc=crypto.encrypt("access-1"),
        refresh_token_enc=crypto.encrypt("refresh-1"),
        oauth_account="support@example.com",
    )
    return box


def test_a_new_token_url_asks_for_the_client_secret_again(admin, oauth_box):
    changed = {**OAUTH, "client_secret": "", "token_url": "https://evil.example.net/token"}
    resp = _edit(admin, oauth_box, **changed)
    assert resp.status_code == 422
    field = _field(resp.get_data(as_text=True), "client_secret")
    assert (
        "The client secret was cleared because Access Token URL changed; enter it again." in field
    )


def test_a_new_token_url_drops_the_tokens(admin, app, oauth_box):
    changed = {**OAUTH, "client_secret": "secret-two", "token_url": "https://b.example.net/token"}
    assert _edit(admin, oauth_box, **changed).status_code == 302
    box = mailbox_of(app, oauth_box)
    assert box.access_token_enc is None
    assert box.refresh_token_enc is None
    assert _secret(app, oauth_box, "client_secret_enc") == "secret-two"


def test_a_new_client_id_drops_the_tokens(admin, app, oauth_box):
    resp = _edit(admin, oauth_box, **{**OAUTH, "client_secret": "", "client_id": "client-two"})
    assert resp.status_code == 302
    box = mailbox_of(app, oauth_box)
    assert box.refresh_token_enc is None
    assert box.oauth_account is None


def test_after_a_new_client_id_the_mailbox_must_be_authorized_again(
    admin, app, oauth_box, run_worker
):
    resp = _edit(admin, oauth_box, **{**OAUTH, "client_secret": "", "client_id": "client-two"})
    run_worker()
    assert "This mailbox is not authorized yet" in admin.get(resp.headers["Location"]).get_data(
        as_text=True
    )


def test_a_new_host_marks_the_access_token_for_refreshing(admin, app, app_env, oauth_box):
    update_mailbox(app_env, oauth_box, token_expires_at=utcnow() + timedelta(hours=1))
    resp = _edit(admin, oauth_box, **{**OAUTH, "client_secret": "", "host": "imap2.example.com"})
    assert resp.status_code == 302
    assert mailbox_of(app, oauth_box).token_expires_at is None


def test_a_new_host_keeps_the_refresh_token(admin, app, oauth_box):
    _edit(admin, oauth_box, **{**OAUTH, "client_secret": "", "host": "imap2.example.com"})
    assert _secret(app, oauth_box, "refresh_token_enc") == "refresh-1"


def test_the_new_host_is_sent_a_freshly_refreshed_token(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    box = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    run_worker()
    old_token = _secret(app, box, "access_token_enc")
    form = oauth_form(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    form = {**form, "client_secret": "", "host": "localhost"}  # the same Dovecot, another name
    assert admin.post(f"/mailboxes/{box}/edit", data=form).status_code == 302
    run_worker()
    assert oauth_server.refresh_count == 1
    assert mailbox_of(app, box).verify_state == "ok"
    assert _secret(app, box, "access_token_enc") != old_token


def test_unchanged_oauth_settings_keep_the_tokens(admin, app, oauth_box):
    assert _edit(admin, oauth_box, **{**OAUTH, "client_secret": ""}).status_code == 302
    assert _secret(app, oauth_box, "refresh_token_enc") == "refresh-1"
