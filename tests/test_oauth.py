"""OAuth end to end with the app: Get Authorization Code, callback, fallback, refresh, re-authorize."""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from sqlmodel import select

from tests.helpers.oauth import authorize, authorized_box, oauth_box
from tests.helpers.rows import mailbox_of
from tests.helpers.web import ADMIN_PASSWORD, csrf_from, get_csrf, mailbox_data
from webapp import crypto
from webapp.db import new_session, utcnow
from webapp.models import Mailbox, OAuthAuthorization, User
from webapp.queue import get_queue
from webapp.services import oauth

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi %d\r\n\r\nbody\r\n"


def test_get_authorization_code_callback_and_setup_shows_the_count(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    for i in range(3):
        oauth_mail_user.deliver(MESSAGE % i)
    box_id = oauth_box(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    run_worker()
    page = admin.get(f"/mailboxes/{box_id}/setup").get_data(as_text=True)
    assert "This mailbox is not authorized yet." in page
    assert "Get Authorization Code" in page

    callback = authorize(admin, box_id)
    sent = oauth_server.last_authorize_params
    assert sent["code_challenge_method"] == "S256"
    assert sent["code_challenge"]
    assert sent["login_hint"] == oauth_mail_user.email
    assert sent["redirect_uri"] == "http://127.0.0.1:5000/oauth/callback"
    assert "code_verifier" not in sent

    resp = admin.get(callback)
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/mailboxes/{box_id}/setup"
    box = mailbox_of(app, box_id)
    assert box.access_token_enc
    assert box.refresh_token_enc
    assert box.oauth_account == oauth_mail_user.email
    with new_session(app.config["SETTINGS"].database_url) as db:
        assert db.exec(select(OAuthAuthorization)).all() == []  # the pending record is gone
    run_worker()
    page = admin.get(f"/mailboxes/{box_id}/setup").get_data(as_text=True)
    assert "3 messages in this mailbox" in page
    assert oauth_mail_user.email in page
    assert "Authorized account" in page
    # The tokens never reach the page.
    assert crypto.decrypt(box.access_token_enc) not in page

    # Replaying the same callback is refused and changes nothing.
    again = admin.get(callback, follow_redirects=True).get_data(as_text=True)
    assert "unknown or was already used" in again
    assert mailbox_of(app, box_id).access_token_enc == box.access_token_enc


def test_google_asks_for_offline_access(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    box_id = oauth_box(
        admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, provider="gmail"
    )
    with new_session(app.config["SETTINGS"].database_url) as db:  # Gmail preset but our test URLs
        box = db.get(Mailbox, box_id)
        box.provider = "gmail"
        db.add(box)
        db.commit()
    authorize(admin, box_id)
    sent = oauth_server.last_authorize_params
    assert sent["access_type"] == "offline"
    assert sent["prompt"] == "consent"


def test_provider_error_comes_back_as_a_message_and_saves_nothing(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    box_id = oauth_box(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    oauth_server.deny_next("access_denied")
    resp = admin.get(authorize(admin, box_id))
    assert resp.headers["Location"] == f"/mailboxes/{box_id}"
    page = admin.get(resp.headers["Location"]).get_data(as_text=True)
    assert (
        "Access was refused on the provider&#39;s consent page" in page
        or "Access was refused" in page
    )
    assert mailbox_of(app, box_id).access_token_enc is None


def test_expired_state_is_refused(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    box_id = oauth_box(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    callback = authorize(admin, box_id)
    with new_session(app.config["SETTINGS"].database_url) as db:
        pending = db.exec(select(OAuthAuthorization)).one()
        pending.expires_at = utcnow() - timedelta(seconds=1)
        db.add(pending)
        db.commit()
    page = admin.get(callback, follow_redirects=True).get_data(as_text=True)
    assert "expired" in page
    assert mailbox_of(app, box_id).access_token_enc is None


def test_state_from_another_session_is_refused(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    box_id = oauth_box(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    callback = authorize(admin, box_id)
    other = app.test_client()  # the same admin, logged in from another browser
    other.post(
        "/auth/login",
        data={
            "csrf_token": get_csrf(other),
            "email": "admin@example.com",
            "password": ADMIN_PASSWORD,
        },
    )
    page = other.get(callback, follow_redirects=True).get_data(as_text=True)
    assert "another browser session" in page
    assert mailbox_of(app, box_id).access_token_enc is None


def test_unknown_state_is_refused(admin, app):
    page = admin.get("/oauth/callback?code=abc&state=forged", follow_redirects=True).get_data(
        as_text=True
    )
    assert "unknown or was already used" in page


def test_pasted_redirect_url_is_exchanged_once(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    oauth_mail_user.deliver(MESSAGE % 1)
    box_id = oauth_box(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    callback = authorize(admin, box_id)
    pasted = "http://127.0.0.1:5000" + callback  # what the admin copies from the address bar
    token = csrf_from(admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True))
    data = mailbox_data(
        admin,
        auth_type="oauth",
        password="",
        email_address=oauth_mail_user.email,
        host="127.0.0.1",
        port=str(oauth_dovecot.imaps_port),
        client_id=oauth_client.client_id,
        client_secret="",
        scope="mail",
        auth_url=oauth_server.authorize_url,
        token_url=oauth_server.token_url,
        auth_code=pasted,
        csrf_token=token,
    )
    resp = admin.post(f"/mailboxes/{box_id}/edit", data=data, follow_redirects=True)
    assert "The pasted authorization code was exchanged" in resp.get_data(as_text=True)
    box = mailbox_of(app, box_id)
    assert box.access_token_enc
    assert box.auth_code_enc is None
    run_worker()
    assert "1 message in this mailbox" in admin.get(f"/mailboxes/{box_id}/setup").get_data(
        as_text=True
    )
    # The same code again: single use, and the page says to get a new one.
    code = parse_qs(urlsplit(pasted).query)["code"][0]
    resp = admin.post(
        f"/mailboxes/{box_id}/edit", data={**data, "auth_code": code}, follow_redirects=True
    )
    page = resp.get_data(as_text=True)
    assert "A code works only once" in page
    # Told apart from a code that no authorization is waiting for (tests/test_oauth_form.py).
    assert "This authorization code was already used." in page


def _expire_locally(app, box_id) -> None:
    with new_session(app.config["SETTINGS"].database_url) as db:
        box = db.get(Mailbox, box_id)
        box.token_expires_at = utcnow() - timedelta(minutes=1)
        db.add(box)
        db.commit()


def test_expiring_token_is_refreshed_and_the_rotated_refresh_token_kept(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    box_id = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    run_worker()
    first = mailbox_of(app, box_id)
    _expire_locally(app, box_id)
    admin.post(f"/mailboxes/{box_id}/verify", data={"csrf_token": get_csrf(admin, "/mailboxes/")})
    run_worker()
    second = mailbox_of(app, box_id)
    assert oauth_server.refresh_count == 1
    assert second.verify_state == "ok"
    assert crypto.decrypt(second.refresh_token_enc) != crypto.decrypt(first.refresh_token_enc)
    # The rotated refresh token is the one used next time (the old one is now revoked).
    _expire_locally(app, box_id)
    admin.post(f"/mailboxes/{box_id}/verify", data={"csrf_token": get_csrf(admin, "/mailboxes/")})
    run_worker()
    assert oauth_server.refresh_count == 2
    assert mailbox_of(app, box_id).verify_state == "ok"


def test_a_token_rejected_by_the_server_is_refreshed_once_before_giving_up(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    box_id = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    oauth_server.expire_access_tokens(oauth_mail_user.email)  # revoked early: expiry time says fine
    admin.post(f"/mailboxes/{box_id}/verify", data={"csrf_token": get_csrf(admin, "/mailboxes/")})
    run_worker()
    assert oauth_server.refresh_count == 1
    assert mailbox_of(app, box_id).verify_state == "ok"


def test_revoked_refresh_token_means_reauthorization_needed(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    box_id = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    oauth_server.revoke_all_for(oauth_mail_user.email)
    _expire_locally(app, box_id)
    admin.post(f"/mailboxes/{box_id}/verify", data={"csrf_token": get_csrf(admin, "/mailboxes/")})
    run_worker()
    box = mailbox_of(app, box_id)
    assert box.reauth_needed
    assert box.status == "re-authorization needed"
    listing = admin.get("/mailboxes/").get_data(as_text=True)
    assert "re-authorization needed" in listing
    assert "Re-authorize" in listing
    page = admin.get(f"/mailboxes/{box_id}").get_data(as_text=True)
    assert "Re-authorization needed." in page
    api_token = (
        app.test_cli_runner().invoke(args=["create-token", "t"]).output.strip().splitlines()[-1]
    )
    item = admin.get(
        "/api/v1/mailboxes", headers={"Authorization": f"Bearer {api_token}"}
    ).get_json()["items"][0]
    assert item["status"] == "re-authorization needed"
    assert item["oauth"]["reauth_needed"] is True
    # No retry loop: a further check does not ask the provider again.
    requests_before = len(oauth_server.token_requests)
    admin.post(f"/mailboxes/{box_id}/verify", data={"csrf_token": get_csrf(admin, "/mailboxes/")})
    run_worker()
    assert len(oauth_server.token_requests) == requests_before
    # Re-authorizing heals it.
    admin.get(authorize(admin, box_id))
    assert mailbox_of(app, box_id).reauth_needed is False


def test_two_workers_refreshing_at_once_refresh_once(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    box_id = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    _expire_locally(app, box_id)
    url = app.config["SETTINGS"].database_url
    results, errors = [], []

    def worker():
        try:
            with new_session(url) as db:
                results.append(oauth.access_token_for(db, db.get(Mailbox, box_id)))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(set(results)) == 1
    assert oauth_server.refresh_count == 1


def test_oauth_secrets_are_encrypted_at_rest(
    admin, app, app_env, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    from pathlib import Path

    box_id = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    box = mailbox_of(app, box_id)
    secrets_ = [
        oauth_client.client_secret,
        crypto.decrypt(box.access_token_enc),
        crypto.decrypt(box.refresh_token_enc),
    ]
    db_file = Path(app_env["DATABASE_URL"].removeprefix("sqlite:///"))
    blob = db_file.read_bytes() + b"".join(
        p.read_bytes() for p in Path(app_env["INSTANCE_PATH"]).rglob("*") if p.is_file()
    )
    wal = db_file.with_name(db_file.name + "-wal")
    if wal.exists():
        blob += wal.read_bytes()
    for secret in secrets_:
        assert secret.encode() not in blob
    with new_session(app.config["SETTINGS"].database_url) as db:
        assert db.exec(select(User)).first() is not None


def test_fetching_refreshes_the_token_and_stops_when_reauthorization_is_needed(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    from webapp.models import Case, FetchRun

    for i in range(2):
        oauth_mail_user.deliver(MESSAGE % i)
    box_id = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    run_worker()  # verification
    token = get_csrf(admin, "/mailboxes/")
    admin.post(f"/mailboxes/{box_id}/continue", data={"csrf_token": token})
    run_worker()  # the first fetch
    url = app.config["SETTINGS"].database_url
    with new_session(url) as db:
        assert len(db.exec(select(Case)).all()) == 2
    # The access token expires: the next fetch refreshes it first, then fetches.
    _expire_locally(app, box_id)
    oauth_mail_user.deliver(MESSAGE % 3)
    admin.post(f"/mailboxes/{box_id}/fetch", data={"csrf_token": token})
    run_worker()
    with new_session(url) as db:
        assert len(db.exec(select(Case)).all()) == 3
    assert oauth_server.refresh_count == 1
    # Consent revoked: one refused refresh, then "Re-authorization needed" and no more fetches.
    oauth_server.revoke_all_for(oauth_mail_user.email)
    _expire_locally(app, box_id)
    admin.post(f"/mailboxes/{box_id}/fetch", data={"csrf_token": token})
    run_worker()
    box = mailbox_of(app, box_id)
    assert box.reauth_needed
    assert box.status == "re-authorization needed"
    with new_session(url) as db:
        last = db.exec(select(FetchRun).order_by(FetchRun.id.desc())).first()
        assert last.state == "error"
        assert last.error_kind == "reauth_needed"
    requests_before = len(oauth_server.token_requests)
    admin.post(f"/mailboxes/{box_id}/fetch", data={"csrf_token": token})
    run_worker()
    assert len(oauth_server.token_requests) == requests_before


def test_the_sweep_forgets_abandoned_authorizations(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    from worker.jobs import sweep

    box_id = oauth_box(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    authorize(admin, box_id)  # the admin never comes back from the provider
    url = app.config["SETTINGS"].database_url
    with new_session(url) as db:
        pending = db.exec(select(OAuthAuthorization)).one()
        pending.expires_at = utcnow() - timedelta(seconds=1)
        db.add(pending)
        db.commit()
    sweep()
    with new_session(url) as db:
        assert db.exec(select(OAuthAuthorization)).all() == []


def test_a_pasted_url_whose_state_belongs_to_another_mailbox_is_refused(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    first = oauth_box(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    second = oauth_box(
        admin,
        oauth_server,
        oauth_dovecot,
        oauth_mail_user,
        oauth_client,
        name="Second",
        email_address="second@example.com",
    )
    callback = authorize(admin, first)  # consent given for the first mailbox
    token = csrf_from(admin.get(f"/mailboxes/{second}/edit").get_data(as_text=True))
    data = mailbox_data(
        admin,
        auth_type="oauth",
        password="",
        email_address="second@example.com",
        name="Second",
        host="127.0.0.1",
        port=str(oauth_dovecot.imaps_port),
        client_id=oauth_client.client_id,
        client_secret="",
        scope="mail",
        auth_url=oauth_server.authorize_url,
        token_url=oauth_server.token_url,
        auth_code="http://127.0.0.1:5000" + callback,
        csrf_token=token,
    )
    page = admin.post(f"/mailboxes/{second}/edit", data=data, follow_redirects=True).get_data(
        as_text=True
    )
    assert "issued for another mailbox" in page
    assert mailbox_of(app, first).access_token_enc is None
    assert mailbox_of(app, second).access_token_enc is None
    assert "authorization_code" not in oauth_server.token_requests  # nothing was exchanged


def test_an_expired_client_secret_asks_for_a_new_secret_instead_of_retrying(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    box_id = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    run_worker()  # the check that follows the authorization
    oauth_server.fail_next_token_request(error="invalid_client", status=401)
    _expire_locally(app, box_id)
    admin.post(f"/mailboxes/{box_id}/verify", data={"csrf_token": get_csrf(admin, "/mailboxes/")})
    run_worker()
    box = mailbox_of(app, box_id)
    assert box.reauth_needed
    assert "Client Secret may have expired" in box.oauth_error
    assert "Client Secret may have expired" in admin.get(f"/mailboxes/{box_id}").get_data(
        as_text=True
    )


def test_a_passing_provider_outage_is_retried_later(
    admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, run_worker
):
    box_id = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    run_worker()  # the check that follows the authorization
    oauth_server.fail_next_token_request()  # 503 temporarily_unavailable
    _expire_locally(app, box_id)
    admin.post(f"/mailboxes/{box_id}/verify", data={"csrf_token": get_csrf(admin, "/mailboxes/")})
    run_worker()
    box = mailbox_of(app, box_id)
    assert not box.reauth_needed
    assert box.verify_state == "error"
    admin.post(f"/mailboxes/{box_id}/verify", data={"csrf_token": get_csrf(admin, "/mailboxes/")})
    run_worker()
    assert mailbox_of(app, box_id).verify_state == "ok"


def test_saving_an_oauth_mailbox_before_authorizing_asks_no_worker(
    admin, app_env, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    box_id = oauth_box(admin, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    page = admin.get(f"/mailboxes/{box_id}/setup").get_data(as_text=True)  # no worker ran

    assert "Next step: authorize." in page
    assert "This mailbox is not authorized yet." in page
    assert "Waiting for a worker" not in page
    assert get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"]).job_ids == []
