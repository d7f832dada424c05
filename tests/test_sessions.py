"""Sessions kept on the server: Log out, a password change, Sign out everywhere, deactivation and
the idle and absolute timeouts end them, seen from two browsers (two test clients)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlmodel import select

from tests.helpers.web import ADMIN_EMAIL, ADMIN_PASSWORD, api_token, csrf_from, get_csrf
from webapp.db import new_session
from webapp.models import User, UserSession
from webapp.services.access import sessions

NEW_PASSWORD = "a brand new passphrase"


def second_browser(app, password: str = ADMIN_PASSWORD):
    """The same admin signed in from another browser."""
    browser = app.test_client()
    token = get_csrf(browser)
    resp = browser.post(
        "/auth/login", data={"csrf_token": token, "email": ADMIN_EMAIL, "password": password}
    )
    assert resp.status_code == 302
    return browser


def signed_in(browser) -> bool:
    return browser.get("/mailboxes/").status_code == 200


def db_of(app):
    return new_session(app.config["SETTINGS"].database_url)


def shift_sessions(app, **deltas: timedelta) -> None:
    """Move every session's created_at / last_seen_at back in time."""
    with db_of(app) as db:
        for row in db.exec(select(UserSession)).all():
            for name, delta in deltas.items():
                setattr(row, name, getattr(row, name) - delta)
            db.add(row)
        db.commit()


def change_password(browser, current: str, new: str = NEW_PASSWORD):
    token = csrf_from(browser.get("/account/").get_data(as_text=True))
    return browser.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": current,
            "new_password": new,
            "new_password2": new,
        },
    )


def test_a_copied_cookie_is_dead_after_log_out(admin, app):
    thief = app.test_client()
    thief.set_cookie("session", admin.get_cookie("session").value)
    assert signed_in(thief)
    admin.post("/auth/logout", data={"csrf_token": get_csrf(admin, "/mailboxes/")})
    assert not signed_in(thief)


def test_changing_the_password_signs_out_the_other_browser(admin, app):
    other = second_browser(app)
    change_password(admin, ADMIN_PASSWORD)
    assert not signed_in(other)


def test_changing_the_password_keeps_this_browser_signed_in(admin, app):
    second_browser(app)
    change_password(admin, ADMIN_PASSWORD)
    assert signed_in(admin)


def test_the_new_password_signs_in(admin, app):
    change_password(admin, ADMIN_PASSWORD)
    assert signed_in(second_browser(app, NEW_PASSWORD))


def test_a_wrong_current_password_changes_nothing(admin, app):
    other = second_browser(app)
    resp = change_password(admin, "not my password")
    assert resp.status_code == 422
    assert "This is not your current password." in resp.get_data(as_text=True)
    assert signed_in(other)


def test_sign_out_everywhere_ends_every_session(admin, app):
    other = second_browser(app)
    token = csrf_from(admin.get("/account/").get_data(as_text=True))
    resp = admin.post("/account/sign-out-everywhere", data={"csrf_token": token})
    assert resp.headers["Location"].endswith("/auth/login")
    assert not signed_in(other)
    assert not signed_in(admin)


def test_account_page_lists_both_browsers(admin, app):
    second_browser(app)
    page = admin.get("/account/").get_data(as_text=True)
    assert page.count("this browser") == 1
    assert page.count("<tr>") == 3  # the head row and two sessions


def test_account_is_linked_from_every_page(admin):
    assert 'href="/account/"' in admin.get("/mailboxes/").get_data(as_text=True)


def test_end_sessions_for_deactivation_ends_both_browsers(admin, app):
    other = second_browser(app)
    with db_of(app) as db:
        user = db.exec(select(User)).one()
        assert sessions.end_sessions(db, user.id) == 2
    assert not signed_in(other)
    assert not signed_in(admin)


def test_a_deactivated_user_is_signed_out_at_once(admin, app, monkeypatch):
    if "active" in User.model_fields:  # the Users page's deactivation
        with db_of(app) as db:
            user = db.exec(select(User)).one()
            user.active = False
            db.add(user)
            db.commit()
    else:  # before User has the column: the loader already honours it
        monkeypatch.setattr(User, "active", False, raising=False)
    assert not signed_in(admin)


def test_a_session_idle_for_too_long_ends(admin, app):
    shift_sessions(app, last_seen_at=timedelta(hours=12, minutes=1))
    assert not signed_in(admin)


def test_a_session_idle_for_less_than_the_timeout_goes_on(admin, app):
    shift_sessions(app, last_seen_at=timedelta(hours=11))
    assert signed_in(admin)


def test_a_session_ends_14_days_after_sign_in_even_if_used(admin, app):
    shift_sessions(app, created_at=timedelta(days=14, minutes=1))
    assert not signed_in(admin)


@pytest.fixture
def short_sessions_app(app_env, monkeypatch):
    from webapp import create_app

    monkeypatch.setenv("SESSION_IDLE_HOURS", "1")
    monkeypatch.setenv("SESSION_MAX_DAYS", "2")
    return create_app({"TESTING": True})


def test_idle_timeout_is_set_from_the_environment(short_sessions_app, admin):
    app = short_sessions_app
    browser = second_browser(app)
    shift_sessions(app, last_seen_at=timedelta(hours=1, minutes=1))
    assert not signed_in(browser)


def test_absolute_timeout_is_set_from_the_environment(short_sessions_app, admin):
    app = short_sessions_app
    browser = second_browser(app)
    shift_sessions(app, created_at=timedelta(days=2, minutes=1))
    assert not signed_in(browser)


def test_a_bad_timeout_setting_stops_the_start_with_its_name(app_env, monkeypatch):
    from webapp import create_app

    monkeypatch.setenv("SESSION_IDLE_HOURS", "twelve")
    with pytest.raises(ValueError, match="SESSION_IDLE_HOURS"):
        create_app({"TESTING": True})


def test_last_seen_is_written_at_most_once_a_minute(admin, app):
    with db_of(app) as db:
        before = db.exec(select(UserSession)).one().last_seen_at
    admin.get("/mailboxes/")
    admin.get("/cases/")
    with db_of(app) as db:
        after = db.exec(select(UserSession)).one().last_seen_at
    assert after == before


def test_last_seen_moves_on_after_a_minute(admin, app):
    shift_sessions(app, last_seen_at=timedelta(minutes=2))
    with db_of(app) as db:
        before = db.exec(select(UserSession)).one().last_seen_at
    admin.get("/mailboxes/")
    with db_of(app) as db:
        after = db.exec(select(UserSession)).one().last_seen_at
    assert after > before


def test_the_table_keeps_only_a_hash_of_the_cookies_token(admin, app):
    with db_of(app) as db:
        row = db.exec(select(UserSession)).one()
    serializer = app.session_interface.get_signing_serializer(app)
    cookie = serializer.loads(admin.get_cookie("session").value)
    assert row.id == hashlib.sha256(cookie["sid"].encode()).hexdigest()


def test_api_tokens_still_work_without_a_session(admin, app):
    token = api_token(admin)
    resp = app.test_client().get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200


def test_ending_the_other_sessions_works_on_each_database(any_db):
    timeouts = sessions.Timeouts(idle=timedelta(hours=12), absolute=timedelta(days=14))
    with new_session(any_db) as db:
        user = User(email="agent@example.com", password_hash="x")
        db.add(user)
        db.commit()
        kept = sessions.start_session(db, user.id, timeouts)
        ended = sessions.start_session(db, user.id, timeouts)
        sessions.end_sessions(db, user.id, except_session=sessions.current_id(kept))
        assert sessions.load_user(db, kept, timeouts) is not None
        assert sessions.load_user(db, ended, timeouts) is None
