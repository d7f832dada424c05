"""First run, login, throttling, sessions and CSRF, as a browser sees them."""

from __future__ import annotations

from tests.helpers.web import ADMIN_EMAIL, ADMIN_PASSWORD, csrf_from, get_csrf


def test_first_visit_offers_to_create_the_first_admin(client):
    resp = client.get("/mailboxes/")
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith("/auth/first-admin")
    page = client.get("/auth/first-admin").get_data(as_text=True)
    assert "Create admin" in page
    assert 'name="password2"' in page


def test_first_admin_passwords_must_match_and_email_is_kept(client):
    token = get_csrf(client, "/auth/first-admin")
    resp = client.post(
        "/auth/first-admin",
        data={
            "csrf_token": token,
            "email": "boss@example.com",
            "password": "0123456789ab",
            "password2": "different-one",
        },
    )
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "The two passwords differ." in page
    assert 'value="boss@example.com"' in page


def test_after_the_first_admin_every_page_needs_a_login(admin, app):
    other = app.test_client()
    for path in ("/mailboxes/", "/mailboxes/new", "/templates/", "/tokens"):
        resp = other.get(path)
        assert resp.status_code == 302, path
        assert "/auth/login" in resp.headers["Location"], path
    # the first-admin page is closed once an admin exists
    assert other.get("/auth/first-admin").headers["Location"].endswith("/auth/login")


def test_login_renews_the_session_and_sets_safe_cookies(admin, app):
    browser = app.test_client()
    token = get_csrf(browser)
    before = browser.get_cookie("session").value
    resp = browser.post(
        "/auth/login?next=/templates/",
        data={"csrf_token": token, "email": ADMIN_EMAIL.upper(), "password": ADMIN_PASSWORD},
    )
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/templates/"
    cookie_header = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie_header
    assert "SameSite=Lax" in cookie_header
    assert "Secure" not in cookie_header  # EXTERNAL_URL is http in the tests
    assert browser.get_cookie("session").value != before
    assert browser.get("/templates/").status_code == 200


def test_login_next_never_redirects_off_site(admin, app):
    browser = app.test_client()
    token = get_csrf(browser)
    resp = browser.post(
        "/auth/login?next=//evil.example/",
        data={"csrf_token": token, "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
    )
    assert resp.headers["Location"] == "/mailboxes/"


def test_secure_cookie_when_external_url_is_https(app_env, monkeypatch):
    from webapp import create_app

    monkeypatch.setenv("EXTERNAL_URL", "https://desk.example.com")
    app = create_app({"TESTING": True})
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_post_without_csrf_token_is_refused(admin):
    resp = admin.post("/mailboxes/new", data={"name": "x"})
    assert resp.status_code == 400
    resp = admin.post("/auth/logout")
    assert resp.status_code == 400


def test_htmx_post_with_csrf_header_is_accepted(admin):
    token = csrf_from(admin.get("/templates/new").get_data(as_text=True))
    resp = admin.post(
        "/templates/preview",
        data={"subject": "Hi {{ contact_name }}", "body": "x"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    assert resp.status_code == 200
    assert "Hi Ada Lovelace" in resp.get_data(as_text=True)


def test_logout_ends_the_session(admin):
    token = get_csrf(admin, "/mailboxes/")
    admin.post("/auth/logout", data={"csrf_token": token})
    assert admin.get("/mailboxes/").status_code == 302


def test_create_admin_command(runner, app):
    result = runner.invoke(
        args=["create-admin", "ops@example.com", "--password", "a long password"]
    )
    assert result.exit_code == 0, result.output
    browser = app.test_client()
    token = get_csrf(browser)
    resp = browser.post(
        "/auth/login",
        data={"csrf_token": token, "email": "ops@example.com", "password": "a long password"},
    )
    assert resp.status_code == 302


def test_passwords_are_hashed(admin, app):
    from sqlmodel import select

    from webapp.db import new_session
    from webapp.models import User

    with new_session(app.config["SETTINGS"].database_url) as db:
        user = db.exec(select(User)).one()
    assert ADMIN_PASSWORD not in user.password_hash
