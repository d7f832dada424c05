"""OAuth from the mailbox form: Get Authorization Code on New Mailbox and on the edit form, a
bare code pasted into Authorization Code, and Basic chosen for a Google or Microsoft mailbox."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import select

from tests.helpers.oauth import authorize, code_of, consent, oauth_box, oauth_form, paste_code
from tests.helpers.rows import mailbox_of
from tests.helpers.web import csrf_from, mailbox_data
from webapp.db import new_session, utcnow
from webapp.models import Mailbox, OAuthAuthorization
from webapp.services.access import users

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi %d\r\n\r\nbody\r\n"
NO_AUTHORIZATION = "No authorization of this mailbox that you started is waiting for a code"
USED = "This authorization code was already used."
GOOGLE_WARNING = "Google has deprecated Basic authentication and refuses passwords"


def _expire_pending(app) -> None:
    with new_session(app.config["SETTINGS"].database_url) as db:
        for pending in db.exec(select(OAuthAuthorization)).all():
            pending.expires_at = utcnow() - timedelta(seconds=1)
            db.add(pending)
        db.commit()


def _only_mailbox_id(app) -> int:
    with new_session(app.config["SETTINGS"].database_url) as db:
        return db.exec(select(Mailbox.id)).one()


# --- a bare code pasted into Authorization Code --------------------------------------------


@pytest.fixture
def oauth_setup(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client):
    """An OAuth mailbox saved through the form (not authorized yet) and its form's values."""
    box_id = oauth_box(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    data = oauth_form(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    return box_id, data


def test_a_fresh_bare_code_pasted_is_exchanged_with_the_pending_verifier(
    admin, app, oauth_server, oauth_setup
):
    box_id, data = oauth_setup
    code = code_of(authorize(admin, box_id))  # the admin copies only the code
    page = paste_code(admin, box_id, data, code).get_data(as_text=True)
    assert "The pasted authorization code was exchanged for a token." in page
    assert oauth_server.last_token_params["code_verifier"]


def test_a_fresh_bare_code_pasted_reaches_mailbox_setup_with_the_count(
    admin, app, oauth_setup, oauth_mail_user, run_worker
):
    oauth_mail_user.deliver(MESSAGE % 1)
    box_id, data = oauth_setup
    resp = paste_code(admin, box_id, data, code_of(authorize(admin, box_id)))
    assert resp.request.path == f"/mailboxes/{box_id}/setup"
    run_worker()
    page = admin.get(f"/mailboxes/{box_id}/setup").get_data(as_text=True)
    assert "1 message in this mailbox" in page


def test_a_pasted_bare_code_uses_its_authorization_once(admin, app, oauth_setup):
    box_id, data = oauth_setup
    paste_code(admin, box_id, data, code_of(authorize(admin, box_id)))
    with new_session(app.config["SETTINGS"].database_url) as db:
        assert db.exec(select(OAuthAuthorization)).all() == []


def test_a_code_without_a_pending_authorization_says_to_get_a_new_one(
    admin, app, oauth_server, oauth_setup
):
    box_id, data = oauth_setup
    page = paste_code(admin, box_id, data, "a-code-from-nowhere").get_data(as_text=True)
    assert NO_AUTHORIZATION in page
    assert "a code works once and only for a few minutes" in page
    assert USED not in page
    assert oauth_server.token_requests == []  # nothing was sent to the provider
    assert mailbox_of(app, box_id).auth_code_enc is None


def test_a_code_whose_authorization_expired_says_to_get_a_new_one(
    admin, app, oauth_server, oauth_setup
):
    box_id, data = oauth_setup
    code = code_of(authorize(admin, box_id))
    _expire_pending(app)
    page = paste_code(admin, box_id, data, code).get_data(as_text=True)
    assert NO_AUTHORIZATION in page
    assert oauth_server.token_requests == []
    assert mailbox_of(app, box_id).access_token_enc is None


def test_a_bare_code_pasted_twice_says_it_was_already_used(admin, app, oauth_setup):
    box_id, data = oauth_setup
    code = code_of(authorize(admin, box_id))
    paste_code(admin, box_id, data, code)
    page = paste_code(admin, box_id, data, code).get_data(as_text=True)
    assert USED in page
    assert NO_AUTHORIZATION not in page


def test_another_users_authorization_is_not_used_for_a_bare_code(
    admin, app, oauth_server, oauth_setup
):
    box_id, data = oauth_setup
    code = code_of(authorize(admin, box_id))
    with new_session(app.config["SETTINGS"].database_url) as db:
        other = users.create_user(db, "colleague@example.com", "another long passphrase")
        pending = db.exec(select(OAuthAuthorization)).one()
        pending.user_id = other.id  # as if another admin had started it
        db.add(pending)
        db.commit()
    page = paste_code(admin, box_id, data, code).get_data(as_text=True)
    assert NO_AUTHORIZATION in page


# --- Get Authorization Code on the form ---------------------------------------------------


def test_new_mailbox_has_get_authorization_code_as_a_submit_button_of_the_form(admin):
    page = admin.get("/mailboxes/new").get_data(as_text=True)
    oauth_fieldset = re.search(r'id="auth-oauth">(.*?)</fieldset>', page, re.S).group(1)
    assert (
        '<button type="submit" name="action" value="authorize" class="secondary">'
        "Get Authorization Code</button>" in oauth_fieldset
    )


def test_get_authorization_code_on_new_mailbox_saves_and_goes_to_the_provider(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    data = oauth_form(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    resp = admin.post("/mailboxes/new", data={**data, "action": "authorize"})
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith(oauth_server.authorize_url + "?")
    assert mailbox_of(app, _only_mailbox_id(app)).email_address == oauth_mail_user.email


def test_get_authorization_code_from_new_mailbox_ends_on_setup_with_the_count(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    for i in range(2):
        oauth_mail_user.deliver(MESSAGE % i)
    data = oauth_form(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    provider_url = admin.post("/mailboxes/new", data={**data, "action": "authorize"}).headers[
        "Location"
    ]
    box_id = _only_mailbox_id(app)
    resp = admin.get(consent(provider_url))
    assert resp.headers["Location"] == f"/mailboxes/{box_id}/setup"
    run_worker()
    page = admin.get(f"/mailboxes/{box_id}/setup").get_data(as_text=True)
    assert "2 messages in this mailbox" in page


def test_get_authorization_code_with_htmx_sends_the_browser_to_the_provider(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    data = oauth_form(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    resp = admin.post(
        "/mailboxes/new", data={**data, "action": "authorize"}, headers={"HX-Request": "true"}
    )
    assert resp.headers["HX-Redirect"].startswith(oauth_server.authorize_url + "?")


def test_get_authorization_code_on_the_edit_form_saves_the_change_first(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, oauth_setup
):
    box_id, data = oauth_setup
    token = csrf_from(admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True))
    form = {**data, "csrf_token": token, "name": "Renamed", "action": "authorize"}
    form["client_secret"] = ""
    resp = admin.post(f"/mailboxes/{box_id}/edit", data=form)
    assert resp.headers["Location"].startswith(oauth_server.authorize_url + "?")
    assert mailbox_of(app, box_id).name == "Renamed"


def test_get_authorization_code_with_a_bad_value_stays_on_the_form(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    data = oauth_form(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    resp = admin.post("/mailboxes/new", data={**data, "action": "authorize", "port": "70000"})
    assert resp.status_code == 422
    assert 'value="70000"' in resp.get_data(as_text=True)
    assert oauth_server.last_authorize_params is None
    with new_session(app.config["SETTINGS"].database_url) as db:
        assert db.exec(select(Mailbox)).all() == []


# --- Basic for a Google or Microsoft mailbox ------------------------------------------------


def _warning(page: str) -> str:
    return re.search(r'<small class="warning" id="auth-warning"[^>]*>([^<]*)</small>', page).group(
        1
    )


def test_no_basic_warning_for_another_host(admin):
    assert _warning(admin.get("/mailboxes/new").get_data(as_text=True)) == ""


@pytest.mark.parametrize(
    "provider, host, owner",
    [
        ("gmail", "imap.gmail.com", "Google"),
        ("other", "imap.gmail.com", "Google"),
        ("outlook", "outlook.office365.com", "Microsoft"),
        ("other", "outlook.office365.com", "Microsoft"),
    ],
)
def test_basic_for_a_google_or_microsoft_host_warns_beside_authentication_type(
    admin, provider, host, owner
):
    data = mailbox_data(admin, provider=provider, host=host, name="")  # shown again: 422
    page = admin.post("/mailboxes/new", data=data).get_data(as_text=True)
    field = re.search(r'id="field-auth_type">(.*?)</div>', page, re.S).group(1)
    assert f"{owner} has deprecated Basic authentication" in _warning(field)


def test_oauth_for_a_google_host_does_not_warn(admin):
    data = mailbox_data(admin, auth_type="oauth", host="imap.gmail.com", name="")
    assert _warning(admin.post("/mailboxes/new", data=data).get_data(as_text=True)) == ""


def test_htmx_auth_type_change_updates_the_warning_out_of_band(admin):
    data = mailbox_data(admin, host="imap.gmail.com")
    frag = admin.post(
        "/mailboxes/form/connection",
        data=data,
        headers={
            "HX-Request": "true",
            "HX-Trigger-Name": "auth_type",
            "X-CSRFToken": data["csrf_token"],
        },
    ).get_data(as_text=True)
    assert re.search(r'id="auth-warning" role="note" hx-swap-oob="true">' + GOOGLE_WARNING, frag)


def test_htmx_host_validation_updates_the_warning_out_of_band(admin):
    data = mailbox_data(admin, host="imap.gmail.com")
    frag = admin.post(
        "/mailboxes/validate/host",
        data=data,
        headers={"HX-Request": "true", "X-CSRFToken": data["csrf_token"]},
    ).get_data(as_text=True)
    assert GOOGLE_WARNING in frag


def test_a_rejected_password_at_a_google_mailbox_says_to_switch_to_oauth(
    admin, app, dovecot, mail_user, run_worker
):
    # The real Google cannot be reached here: the Gmail preset makes the mailbox Google's,
    # and the test Dovecot rejects the password as Google would.
    data = mailbox_data(
        admin,
        provider="gmail",
        email_address=mail_user.email,
        password="not-the-password",
        port=str(dovecot.imaps_port),
    )
    setup_url = admin.post("/mailboxes/new", data=data).headers["Location"]
    run_worker()
    page = admin.get(setup_url).get_data(as_text=True)
    assert "Google refuses passwords (Basic authentication) for its mailboxes." in page
    assert "Switch to OAuth" in page
    assert "not-the-password" not in page
