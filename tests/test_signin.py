"""Signing in: where `next` may send the browser, throttling by address and by account instead of a
lock, the same answer for unknown and known email addresses, and one first admin only."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from tests.helpers.web import ADMIN_EMAIL, ADMIN_PASSWORD, csrf_from, get_csrf
from webapp.db import new_session
from webapp.models import SigninThrottle, User
from webapp.services.access import signin

ATTACKER = "203.0.113.66"
ADMIN_DESK = "198.51.100.7"


def sign_in(app, email: str, password: str, address: str = ADMIN_DESK, next_path=None):
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = address
    token = get_csrf(browser)
    url = "/auth/login" if next_path is None else f"/auth/login?next={next_path}"
    return browser.post(url, data={"csrf_token": token, "email": email, "password": password})


def error_of(resp) -> str:
    match = re.search(r'<p class="error" role="alert">([^<]*)</p>', resp.get_data(as_text=True))
    assert match, "no error on the page"
    return match.group(1)


def backdate_failures(app, by: timedelta) -> None:
    """Move every recorded failure back in time, as if the wait had passed."""
    with new_session(app.config["SETTINGS"].database_url) as db:
        for row in db.exec(select(SigninThrottle)).all():
            row.last_failure_at -= by
            db.add(row)
        db.commit()


@pytest.mark.parametrize(
    "next_path",
    [
        "/%09/evil.example",  # a browser drops the tab: //evil.example
        "/%0a/x",  # a newline in the Location header answered 500
        "/%0d%0aSet-Cookie:%20x=1",
        "//evil.example/",
        "/%5Cevil.example",  # a browser reads /\evil.example as //evil.example
        "https://evil.example/",
        "/%20/evil.example%01",
    ],
)
def test_next_that_could_leave_the_site_goes_to_mailboxes(admin, app, next_path):
    resp = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD, next_path=next_path)
    assert resp.headers["Location"] == "/mailboxes/"


def test_next_on_this_site_is_followed_with_its_query(admin, app):
    resp = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD, next_path="/cases/%3Fpage%3D2")
    assert resp.headers["Location"] == "/cases/?page=2"


def test_the_login_form_does_not_carry_a_bad_next(admin, app):
    page = app.test_client().get("/auth/login?next=/%09/evil.example").get_data(as_text=True)
    assert "evil.example" not in page


def test_unknown_email_and_wrong_password_get_the_same_message(admin, app):
    unknown = sign_in(app, "nobody@example.com", "wrong password one")
    wrong = sign_in(app, ADMIN_EMAIL, "wrong password one")
    assert error_of(unknown) == error_of(wrong)


def test_unknown_email_and_wrong_password_get_the_same_status(admin, app):
    unknown = sign_in(app, "nobody@example.com", "wrong password one")
    wrong = sign_in(app, ADMIN_EMAIL, "wrong password one")
    assert unknown.status_code == wrong.status_code


def test_unknown_email_costs_a_password_hash_check_as_a_wrong_password_does(
    admin, app, monkeypatch
):
    checks = []
    real = signin.verify_password

    def counting(password_hash, password):
        checks.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(signin, "verify_password", counting)
    sign_in(app, "nobody@example.com", "guess for nobody")
    sign_in(app, ADMIN_EMAIL, "guess for admin")
    assert checks == ["guess for nobody", "guess for admin"]


def test_wrong_passwords_hold_back_that_address_with_a_time_to_try_again(admin, app):
    for _ in range(signin.FREE_BY_ACCOUNT_AND_ADDRESS):
        sign_in(app, ADMIN_EMAIL, "wrong password", address=ATTACKER)
    resp = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD, address=ATTACKER)
    assert resp.status_code == 429
    assert "Try again in 2 seconds" in error_of(resp)


def test_held_back_answer_does_not_tell_whether_the_account_exists(admin, app):
    for email in (ADMIN_EMAIL, "nobody@example.com"):
        for _ in range(signin.FREE_BY_ACCOUNT_AND_ADDRESS):
            sign_in(app, email, "wrong password", address=ATTACKER)
    known = sign_in(app, ADMIN_EMAIL, "wrong password", address=ATTACKER)
    unknown = sign_in(app, "nobody@example.com", "wrong password", address=ATTACKER)

    def without_times(resp):
        return re.sub(r"\d+", "N", error_of(resp))

    assert without_times(known) == without_times(unknown)


def test_the_right_password_from_another_address_still_signs_in(admin, app):
    for _ in range(10):
        sign_in(app, ADMIN_EMAIL, "wrong password", address=ATTACKER)
    resp = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD, address=ADMIN_DESK)
    assert resp.status_code == 302


def test_after_the_wait_the_same_address_signs_in_again(admin, app):
    for _ in range(6):
        sign_in(app, ADMIN_EMAIL, "wrong password", address=ATTACKER)
        backdate_failures(app, timedelta(minutes=20))
    resp = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD, address=ATTACKER)
    assert resp.status_code == 302


def test_each_further_failure_doubles_the_wait_up_to_15_minutes():
    free = signin.FREE_BY_ACCOUNT_AND_ADDRESS
    waits = [signin.wait_after(free + n, free).total_seconds() for n in range(12)]
    assert waits == [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]


def test_no_wait_before_the_free_failures_are_used():
    assert signin.wait_after(2, 3) == timedelta(0)


def test_many_addresses_failing_hold_back_only_addresses_that_failed(admin, app):
    for n in range(signin.FREE_BY_ACCOUNT + 1):
        sign_in(app, ADMIN_EMAIL, "wrong password", address=f"192.0.2.{n + 1}")
    repeat = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD, address="192.0.2.1")
    fresh = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD, address=ADMIN_DESK)
    assert repeat.status_code == 429
    assert fresh.status_code == 302


def test_one_address_trying_many_accounts_is_held_back(admin, app):
    for n in range(signin.FREE_BY_ADDRESS):
        sign_in(app, f"user{n}@example.com", "wrong password", address=ATTACKER)
    resp = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD, address=ATTACKER)
    assert resp.status_code == 429


def test_a_successful_sign_in_clears_the_count_of_its_address(admin, app):
    for _ in range(signin.FREE_BY_ACCOUNT_AND_ADDRESS - 1):
        sign_in(app, ADMIN_EMAIL, "wrong password")
    sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD)
    sign_in(app, ADMIN_EMAIL, "typo once more")
    resp = sign_in(app, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert resp.status_code == 302


def test_the_account_is_never_locked_in_the_database(admin, app):
    for _ in range(8):
        sign_in(app, ADMIN_EMAIL, "wrong password", address=ATTACKER)
    with new_session(app.config["SETTINGS"].database_url) as db:
        user = db.exec(select(User)).one()
    assert not hasattr(user, "locked_until")


@pytest.fixture
def app_on_any_db(app_env, any_db, monkeypatch):
    from webapp import create_app

    monkeypatch.setenv("DATABASE_URL", any_db)
    return create_app({"TESTING": True})


def test_two_first_admin_forms_at_once_create_one_admin(app_on_any_db):
    app = app_on_any_db
    barrier = threading.Barrier(2)
    answers: dict[str, str] = {}

    def submit(email: str) -> None:
        browser = app.test_client()
        token = csrf_from(browser.get("/auth/first-admin").get_data(as_text=True))
        barrier.wait()
        resp = browser.post(
            "/auth/first-admin",
            data={
                "csrf_token": token,
                "email": email,
                "password": ADMIN_PASSWORD,
                "password2": ADMIN_PASSWORD,
            },
        )
        answers[email] = resp.headers.get("Location", str(resp.status_code))

    threads = [
        threading.Thread(target=submit, args=(email,))
        for email in ("first@example.com", "second@example.com")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with new_session(app.config["SETTINGS"].database_url) as db:
        admins = db.exec(select(User)).all()
    assert len(admins) == 1
    assert sorted(answers.values()) == ["/auth/login", "/mailboxes/"]


@pytest.fixture
def proxied_app(app_env, monkeypatch):
    from webapp import create_app

    monkeypatch.setenv("TRUSTED_PROXIES", "1")
    return create_app({"TESTING": True})


def test_behind_a_trusted_proxy_clients_are_told_apart_by_forwarded_address(proxied_app, admin):
    def through_proxy(client_address: str, password: str):
        browser = proxied_app.test_client()
        browser.environ_base["REMOTE_ADDR"] = "10.0.0.1"  # the proxy
        headers = {"X-Forwarded-For": client_address}
        token = csrf_from(browser.get("/auth/login", headers=headers).get_data(as_text=True))
        data = {"csrf_token": token, "email": ADMIN_EMAIL, "password": password}
        return browser.post("/auth/login", data=data, headers=headers)

    for _ in range(signin.FREE_BY_ADDRESS):
        through_proxy(ATTACKER, "wrong password")
    assert through_proxy(ADMIN_DESK, ADMIN_PASSWORD).status_code == 302


def test_counting_failures_works_on_each_database(any_db):
    with new_session(any_db) as db:
        for _ in range(signin.FREE_BY_ACCOUNT_AND_ADDRESS):
            signin.record_failure(db, ADMIN_EMAIL, ATTACKER)
        held = signin.retry_at(db, ADMIN_EMAIL, ATTACKER)
        fresh = signin.retry_at(db, ADMIN_EMAIL, ADMIN_DESK)
    assert held is not None
    assert fresh is None
