"""Headers and logs: HSTS behind https, no caching of signed-in pages and API answers, the CSP's
base-uri and form-action, access logs without tokens or OAuth codes, and /healthz without the
names of exceptions."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from werkzeug.serving import make_server

from tests.helpers.web import api_token, mailbox_data
from tests.servers.dovecot import free_ports
from webapp.config import PROJECT_ROOT

AUTH_URL = "https://login.provider.example/oauth2/authorize"
SECRETS = ("SENDERTOKEN123", "OAUTHCODE456", "OAUTHSTATE789")
SECRET_PATHS = (
    "/confirm/SENDERTOKEN123",
    "/oauth/callback?code=OAUTHCODE456&state=OAUTHSTATE789",
)


def form_action(resp) -> str:
    csp = resp.headers["Content-Security-Policy"]
    return re.search(r"form-action ([^;]*)", csp).group(1).strip()


def oauth_mailbox(admin) -> int:
    data = mailbox_data(
        admin,
        auth_type="oauth",
        password="",
        client_id="desk-client",
        client_secret="desk-secret",
        scope="mail",
        auth_url=AUTH_URL,
        token_url="https://login.provider.example/oauth2/token",
    )
    resp = admin.post("/mailboxes/new", data=data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return int(re.search(r"/mailboxes/(\d+)/setup", resp.headers["Location"]).group(1))


@pytest.fixture
def https_app(app_env, monkeypatch):
    from webapp import create_app

    monkeypatch.setenv("EXTERNAL_URL", "https://desk.example.com")
    return create_app({"TESTING": True})


def test_hsts_when_external_url_is_https(https_app):
    resp = https_app.test_client().get("/auth/first-admin")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_no_hsts_when_external_url_is_http(client):
    assert "Strict-Transport-Security" not in client.get("/auth/first-admin").headers


@pytest.mark.parametrize(
    "path", ["/cases/", "/outbox/", "/mailboxes/", "/tasks", "/templates/", "/account/"]
)
def test_signed_in_pages_are_not_stored(admin, path):
    resp = admin.get(path)
    assert resp.status_code == 200
    assert "no-store" in resp.headers["Cache-Control"]


def test_api_answers_are_not_stored(admin, app):
    token = api_token(admin)
    resp = app.test_client().get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert "no-store" in resp.headers["Cache-Control"]


def test_api_refusals_are_not_stored(app):
    resp = app.test_client().get("/api/v1/cases")
    assert resp.status_code == 401
    assert "no-store" in resp.headers["Cache-Control"]


def test_static_files_may_be_cached(admin):
    resp = admin.get("/static/app.css")
    assert "no-store" not in resp.headers.get("Cache-Control", "")


def test_csp_forbids_base_tags(admin):
    assert "base-uri 'none'" in admin.get("/cases/").headers["Content-Security-Policy"]


def test_pages_that_start_no_authorization_post_only_to_this_site(admin):
    assert form_action(admin.get("/cases/")) == "'self'"


def test_mailbox_setup_may_post_on_to_its_providers_auth_url(admin):
    box_id = oauth_mailbox(admin)
    resp = admin.get(f"/mailboxes/{box_id}/setup")
    assert form_action(resp) == "'self' https://login.provider.example"


def test_the_mailbox_list_may_post_on_to_the_providers_for_re_authorize(admin):
    oauth_mailbox(admin)
    assert form_action(admin.get("/mailboxes/")) == "'self' https://login.provider.example"


def test_a_basic_mailbox_page_posts_only_to_this_site(admin):
    resp = admin.post("/mailboxes/new", data=mailbox_data(admin))
    box_id = re.search(r"/mailboxes/(\d+)/setup", resp.headers["Location"]).group(1)
    assert form_action(admin.get(f"/mailboxes/{box_id}")) == "'self'"


def test_the_mailbox_form_may_post_on_to_the_auth_url_typed_in_it(admin):
    sources = form_action(admin.get("/mailboxes/new")).split()
    assert "https:" in sources


# --- access logs -----------------------------------------------------------------------------


def test_development_server_log_holds_no_token_code_or_state(app, caplog):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            for path in SECRET_PATHS:
                _get(f"http://127.0.0.1:{server.port}{path}")
    finally:
        server.shutdown()
    logged = caplog.text
    assert "/confirm/[redacted]" in logged
    assert not [secret for secret in SECRETS if secret in logged]


def _get(url: str) -> None:
    try:
        urllib.request.urlopen(url, timeout=10).close()
    except urllib.error.HTTPError:
        pass  # a redirect to the login page or a 404: only the log line matters


def _procfile_web() -> str:
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no web: line in the Procfile")


def test_gunicorn_access_log_from_the_procfile_holds_no_token_code_or_state(app_env, tmp_path):
    port = free_ports(1)[0]
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        web = subprocess.Popen(
            ["bash", "-c", "exec " + _procfile_web()],
            cwd=PROJECT_ROOT,
            env={**env, "PATH": f"{PROJECT_ROOT / '.venv' / 'bin'}:{env['PATH']}"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", web, log_path)
        for path in SECRET_PATHS:
            _get(f"http://127.0.0.1:{port}{path}")
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(30)
    logged = log_path.read_text()
    assert "/confirm/[redacted]" in logged
    assert not [secret for secret in SECRETS if secret in logged]


def _wait_for(url: str, proc: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + 30  # a bound on start-up, not a measurement
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise AssertionError(f"gunicorn did not come up:\n{log_path.read_text()}")


# --- /healthz --------------------------------------------------------------------------------


def test_healthz_says_not_ok_without_naming_the_error(app_env, monkeypatch, tmp_path):
    from webapp import create_app

    monkeypatch.setenv("REDIS_URL", f"unix://{tmp_path}/nothing.sock")
    resp = create_app({"TESTING": True}).test_client().get("/healthz")
    assert resp.get_json() == {"status": "not ok", "database": "ok", "redis": "not ok"}


def test_healthz_names_no_exception_class(app_env, monkeypatch, tmp_path):
    from webapp import create_app

    monkeypatch.setenv("REDIS_URL", f"unix://{tmp_path}/nothing.sock")
    body = create_app({"TESTING": True}).test_client().get("/healthz").get_data(as_text=True)
    assert "Error" not in body
