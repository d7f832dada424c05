"""API tokens from the UI and the shell, and GET /api/v1/mailboxes behind them."""

from __future__ import annotations

import re

from tests.helpers.web import api_token, csrf_from, mailbox_data


def test_without_a_valid_token_the_api_answers_401(client):
    assert client.get("/api/v1/mailboxes").status_code == 401
    resp = client.get("/api/v1/mailboxes", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert "Bearer" in resp.headers["WWW-Authenticate"]


def test_mailboxes_listed_without_secrets(admin):
    admin.post("/mailboxes/new", data=mailbox_data(admin, password="top-secret-pw"))
    token = api_token(admin)
    resp = admin.get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"})
    body = resp.get_json()
    assert resp.status_code == 200
    assert body["total"] == 1
    item = body["items"][0]
    assert item["email_address"] == "support@example.com"
    assert item["protocol"] == "imaps"
    assert item["status"] == "verifying"
    assert item["password_set"] is True
    raw = resp.get_data(as_text=True)
    assert "top-secret-pw" not in raw
    assert "password_enc" not in raw
    assert "gAAAA" not in raw


def test_the_list_is_paginated(admin):
    for i in range(55):
        admin.post(
            "/mailboxes/new",
            data=mailbox_data(admin, name=f"Box {i}", email_address=f"b{i}@example.com"),
        )
    token = api_token(admin)
    first = admin.get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"}).get_json()
    second = admin.get(
        "/api/v1/mailboxes?page=2", headers={"Authorization": f"Bearer {token}"}
    ).get_json()
    assert first["total"] == second["total"] == 55
    assert len(first["items"]) == 50
    assert len(second["items"]) == 5
    assert {i["id"] for i in first["items"]}.isdisjoint({i["id"] for i in second["items"]})


def test_a_revoked_token_stops_working(admin):
    token = api_token(admin)
    page = admin.get("/tokens").get_data(as_text=True)
    assert token not in page  # shown once, never again
    revoke = re.search(r'action="(/tokens/\d+/revoke)"', page).group(1)
    admin.post(revoke, data={"csrf_token": csrf_from(page)})
    assert (
        admin.get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )


def test_create_token_command_prints_the_token_last(runner, client):
    result = runner.invoke(args=["create-token", "ci"])
    assert result.exit_code == 0
    token = result.output.strip().splitlines()[-1]
    assert (
        client.get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )


def test_healthz_reports_database_and_redis(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
    }


def test_healthz_fails_when_redis_is_gone(app_env, monkeypatch, tmp_path):
    from webapp import create_app

    monkeypatch.setenv("REDIS_URL", f"unix://{tmp_path}/nothing.sock")
    resp = create_app({"TESTING": True}).test_client().get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json()["redis"] == "not ok"
