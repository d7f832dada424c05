"""The audit log, for admins (page and API): sign-ins, failed sign-ins, user changes, mailboxes
created, changed (the fields' names, never their values) and deleted, OAuth, API tokens, and
cases closed and reopened."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlmodel import col, select

from tests.helpers.mailboxes import open_case, replying_desk
from tests.helpers.oauth import authorized_box
from tests.helpers.team import AGENT_EMAIL, add_user, post_user_form, sign_in, user_row
from tests.helpers.web import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    api_token,
    change_status,
    csrf_from,
    mailbox_data,
)
from webapp.db import new_session, utcnow
from webapp.models import AuditEvent, Mailbox
from webapp.services import oauth
from webapp.services.access import audit


def _events(env: dict, action: str | None = None) -> list[AuditEvent]:
    with new_session(env["DATABASE_URL"]) as db:
        query = select(AuditEvent).order_by(col(AuditEvent.id))
        if action:
            query = query.where(AuditEvent.action == action)
        return list(db.exec(query).all())


def _actions(env: dict) -> list[str]:
    return [e.action for e in _events(env)]


def _admin_id(env: dict) -> int:
    return user_row(env, ADMIN_EMAIL).id


def test_a_sign_in_is_recorded_with_the_client_address(admin, app, app_env):
    sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD)
    (event,) = _events(app_env, audit.SIGN_IN)
    assert event.actor_id == _admin_id(app_env)
    assert event.address == "127.0.0.1"


def test_a_failed_sign_in_keeps_the_email_tried_never_the_password(admin, app, app_env):
    sign_in(app, "Mallory@Example.com", "guessed password 99")
    (event,) = _events(app_env, audit.SIGN_IN_FAILED)
    assert event.details == {"email": "Mallory@Example.com"}
    assert event.actor_id is None
    assert event.address == "127.0.0.1"
    assert "guessed password 99" not in json.dumps(event.details) + event.target


def test_a_wrong_password_for_a_real_account_is_a_failed_sign_in(admin, app, app_env):
    sign_in(app, ADMIN_EMAIL, "not the password")
    assert [e.details["email"] for e in _events(app_env, audit.SIGN_IN_FAILED)] == [ADMIN_EMAIL]


def test_user_changes_are_recorded_with_who_made_them(admin, app_env):
    add_user(admin)
    uid = user_row(app_env, AGENT_EMAIL).id
    post_user_form(admin, uid, "role", "admin")
    post_user_form(admin, uid, "active", "0")
    post_user_form(admin, uid, "active", "1")
    events = _events(app_env)[1:]  # after the first admin's own creation
    assert [e.action for e in events] == [
        audit.USER_CREATED, audit.USER_ROLE, audit.USER_DEACTIVATED, audit.USER_REACTIVATED,
    ]  # fmt: skip
    assert {e.actor_id for e in events} == {_admin_id(app_env)}
    assert events[1].details == {"from": "agent", "to": "admin"}
    assert events[0].details["role"] == "agent"
    assert AGENT_EMAIL in events[2].target


def test_the_first_admin_is_recorded_as_a_user_created(admin, app_env):
    (event,) = _events(app_env, audit.USER_CREATED)
    assert event.actor_id == _admin_id(app_env)
    assert event.details["role"] == "admin"


def _new_mailbox(admin, **fields) -> int:
    resp = admin.post("/mailboxes/new", data=mailbox_data(admin, **fields))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return int(re.search(r"/mailboxes/(\d+)/", resp.headers["Location"]).group(1))


def test_a_mailbox_created_changed_and_deleted_is_recorded(admin, app_env):
    box = _new_mailbox(admin)
    admin.post(f"/mailboxes/{box}/edit", data=mailbox_data(admin, name="Help desk", password=""))
    token = csrf_from(admin.get(f"/mailboxes/{box}/delete").get_data(as_text=True))
    admin.post(f"/mailboxes/{box}/delete", data={"csrf_token": token})
    created, changed, deleted = _events(app_env)[-3:]
    assert created.action == audit.MAILBOX_CREATED
    assert changed.action == audit.MAILBOX_CHANGED
    assert changed.details == {"fields": ["name"]}
    assert deleted.action == audit.MAILBOX_DELETED
    assert "Help desk" in deleted.target
    assert deleted.actor_id == _admin_id(app_env)


def test_a_changed_password_is_named_and_its_value_is_nowhere_in_the_log(admin, app, app_env):
    box = _new_mailbox(admin)
    new_password = "n3w-Secret-Pa55"
    admin.post(
        f"/mailboxes/{box}/edit",
        data=mailbox_data(admin, password=new_password, host="localhost"),
    )
    (changed,) = _events(app_env, audit.MAILBOX_CHANGED)
    assert changed.details == {"fields": ["host", "password"]}
    page = admin.get("/audit/").get_data(as_text=True)
    assert "host, password" in page
    assert new_password not in page
    api = admin.get("/api/v1/audit", headers={"Authorization": f"Bearer {api_token(admin)}"})
    assert new_password not in api.get_data(as_text=True)
    with new_session(app_env["DATABASE_URL"]) as db:
        encrypted = db.get(Mailbox, box).password_enc
    assert encrypted not in json.dumps([e.details for e in _events(app_env)])


def test_saving_a_mailbox_unchanged_records_nothing(admin, app_env):
    box = _new_mailbox(admin)
    admin.post(f"/mailboxes/{box}/edit", data=mailbox_data(admin, password=""))
    assert _events(app_env, audit.MAILBOX_CHANGED) == []


def test_enabling_or_disabling_a_mailbox_is_a_change_of_enabled(admin, app_env):
    box = _new_mailbox(admin)
    token = csrf_from(admin.get("/mailboxes/").get_data(as_text=True))
    admin.post(f"/mailboxes/{box}/toggle", data={"csrf_token": token})
    (changed,) = _events(app_env, audit.MAILBOX_CHANGED)
    assert changed.details == {"fields": ["enabled"]}


def test_api_tokens_created_and_revoked_are_recorded(admin, app_env):
    api_token(admin, name="reporting")
    (created,) = _events(app_env, audit.TOKEN_CREATED)
    page = admin.get("/tokens").get_data(as_text=True)
    revoke = re.search(r'action="(/tokens/\d+/revoke)"', page).group(1)
    admin.post(revoke, data={"csrf_token": csrf_from(page)})
    (revoked,) = _events(app_env, audit.TOKEN_REVOKED)
    assert "reporting" in created.target
    assert "reporting" in revoked.target
    assert revoked.actor_id == _admin_id(app_env)
    assert revoked.address == "127.0.0.1"


def test_cases_closed_and_reopened_are_recorded(admin, app_env, dovecot, mail_user, smtp_server):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    change_status(admin, case.id, "close")
    change_status(admin, case.id, "reopen")
    closed, reopened = _events(app_env)[-2:]
    assert closed.action == audit.CASE_CLOSED
    assert reopened.action == audit.CASE_REOPENED
    assert closed.target == f"case #{case.number}"
    assert closed.details == {"via": "case page"}
    assert reopened.actor_id == _admin_id(app_env)


def test_a_case_set_to_pending_is_recorded(admin, app_env, dovecot, mail_user, smtp_server):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    page = admin.get(f"/cases/{case.id}").get_data(as_text=True)
    admin.post(
        f"/cases/{case.id}/status", data={"csrf_token": csrf_from(page), "status": "pending"}
    )
    (pending,) = _events(app_env, audit.CASE_PENDING)
    assert pending.target == f"case #{case.number}"
    assert pending.actor_id == _admin_id(app_env)


def test_a_case_assigned_and_given_back_is_recorded(
    admin, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    page = admin.get(f"/cases/{case.id}").get_data(as_text=True)
    token = csrf_from(page)
    admin.post(
        f"/cases/{case.id}/assignee", data={"csrf_token": token, "assignee": _admin_id(app_env)}
    )
    admin.post(f"/cases/{case.id}/assignee", data={"csrf_token": token, "assignee": ""})
    assigned, given_back = _events(app_env, audit.CASE_ASSIGNED)
    assert assigned.details == {"via": "case page", "assignee": ADMIN_EMAIL}
    assert given_back.details == {"via": "case page", "assignee": None}
    assert assigned.actor_id == _admin_id(app_env)
    assert assigned.address == "127.0.0.1"
    page = admin.get("/audit/").get_data(as_text=True)
    assert "Case assigned" in page


def test_oauth_authorized_and_reauthorization_needed_are_recorded(
    admin, app, app_env, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client
):
    box = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    (authorized,) = _events(app_env, audit.OAUTH_AUTHORIZED)
    assert authorized.actor_id == _admin_id(app_env)
    assert authorized.details == {"account": oauth_mail_user.email}
    oauth_server.revoke_all_for(oauth_mail_user.email)
    with new_session(app_env["DATABASE_URL"]) as db, pytest.raises(oauth.ReauthNeeded):
        mailbox = db.get(Mailbox, box)
        mailbox.token_expires_at = utcnow() - timedelta(minutes=1)  # due for a refresh
        db.add(mailbox)
        db.commit()
        oauth.refresh(db, box)
    (reauth,) = _events(app_env, audit.OAUTH_REAUTH)
    assert reauth.details == {"provider_error": "invalid_grant"}
    assert reauth.actor_id is None


def _fill(env: dict, n: int) -> None:
    with new_session(env["DATABASE_URL"]) as db:
        for i in range(n):
            audit.record(db, audit.SIGN_IN_FAILED, None, f"try{i}@example.com")
        db.commit()


def test_the_audit_page_shows_the_newest_first_fifty_a_page(admin, app_env):
    _fill(app_env, 60)
    first = admin.get("/audit/").get_data(as_text=True)
    assert first.count('<tr id="event-') == 50
    assert first.index("try59@example.com") < first.index("try58@example.com")
    assert 'href="/audit/?page=2"' in first
    second = admin.get("/audit/?page=2").get_data(as_text=True)
    assert second.count('<tr id="event-') == 11  # 10 tries and the first admin's creation


def test_the_api_lists_the_audit_log_newest_first(admin, app, app_env):
    token = api_token(admin)
    sign_in(app, "someone@example.com", "wrong")
    body = (
        app.test_client()
        .get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"})
        .get_json()
    )
    assert body["total"] == 3  # the first admin, the token, the failed sign-in
    assert body["items"][0]["action"] == audit.SIGN_IN_FAILED
    assert body["items"][0]["details"] == {"email": "someone@example.com"}
    assert body["items"][1]["actor"] == ADMIN_EMAIL


def test_the_audit_api_needs_a_token(app):
    assert app.test_client().get("/api/v1/audit").status_code == 401


def test_a_user_created_on_the_command_line_has_no_actor(admin, runner, app_env):
    runner.invoke(args=["create-user", "ops@example.com", "--password", "a long password 1"])
    created = _events(app_env, audit.USER_CREATED)[-1]
    assert created.actor_id is None
    assert created.details["email"] == "ops@example.com"
