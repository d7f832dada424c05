"""What the test client posts: CSRF tokens, the admin's login, the mailbox form, comments,
Close and Reopen."""

from __future__ import annotations

import re

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery"


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'"X-CSRFToken": "([^"]+)"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


def get_csrf(client, url: str = "/auth/login") -> str:
    return csrf_from(client.get(url).get_data(as_text=True))


def api_token(admin, name: str = "reporting") -> str:
    """Create an API token on the Tokens page, as an admin would; the token shown once."""
    token = csrf_from(admin.get("/tokens").get_data(as_text=True))
    page = admin.post("/tokens", data={"csrf_token": token, "name": name}).get_data(as_text=True)
    return re.search(r'id="new-token" type="text" readonly value="([^"]+)"', page).group(1)


MAILBOX_FORM = {
    "name": "Support",
    "enabled": "y",
    "description": "",
    "auth_type": "basic",
    "provider": "other",
    "email_address": "support@example.com",
    "username": "",
    "password": "s3cret-Pa55word",
    "protocol": "imaps",
    "host": "127.0.0.1",
    "port": "993",
    "folders": "INBOX",
    "fetch_since": "",
    "fetch_interval_minutes": "1",
    "after_fetch": "leave",
    "move_to_folder": "",
    "max_message_mb": "50",
    "client_id": "",
    "client_secret": "",
    "scope": "",
    "grant_type": "authorization_code",
    "tenant": "common",
    "auth_url": "",
    "token_url": "",
    "auth_code": "",
    "case_response_template_id": "1",
    "keep_attachments": "y",
    "end_of_message_marker": "##- Please type your reply above this line -##",
    "allow_new_case": "y",
    "auto_ack_template_id": "2",
    "sender_filter": "",
    "create_new_contact": "y",
}


def mailbox_data(client, **overrides) -> dict:
    """A complete, valid Basic-auth mailbox form as a browser would post it."""
    token = csrf_from(client.get("/mailboxes/new").get_data(as_text=True))
    data = {"csrf_token": token, **MAILBOX_FORM, **overrides}
    return {k: v for k, v in data.items() if v is not None}


def save_new_mailbox(admin, **overrides) -> int:
    """Post New Mailbox; the id of the mailbox saved (the redirect to its Mailbox Setup)."""
    resp = admin.post("/mailboxes/new", data=mailbox_data(admin, **overrides))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return int(re.search(r"/mailboxes/(\d+)/setup", resp.headers["Location"]).group(1))


def api_mailbox_items(admin, client) -> list[dict]:
    """GET /api/v1/mailboxes with a token made on the Tokens page."""
    token = api_token(admin)
    resp = client.get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"})
    return resp.get_json()["items"]


def on_dovecot(dovecot, user, **overrides) -> dict:
    """Form fields for a mailbox of this test Dovecot user (IMAPS unless overridden)."""
    return {
        "email_address": user.email,
        "password": user.password,
        "host": "127.0.0.1",
        "port": str(dovecot.imaps_port),
        **overrides,
    }


def fetch_now(admin, box: int, run_worker) -> None:
    """Press Fetch now on the mailbox page, then let the real RQ worker run the job."""
    token = csrf_from(admin.get(f"/mailboxes/{box}").get_data(as_text=True))
    assert admin.post(f"/mailboxes/{box}/fetch", data={"csrf_token": token}).status_code == 302
    run_worker()


def case_page(client, case_id: int) -> str:
    resp = client.get(f"/cases/{case_id}")
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def comment(
    client,
    case_id: int,
    text: str,
    *,
    key: str | None = None,
    htmx: bool = False,
    close: bool = False,
):
    """Post the comment form as the case page renders it (its key unless one is given);
    `close`: with its "Send and close" button."""
    page = case_page(client, case_id)
    data = {"csrf_token": csrf_from(page), "comment": text, "next": f"/cases/{case_id}"}
    data["key"] = key or _field(page, "key")
    if close:
        data["close"] = _button(page, "close")
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(f"/cases/{case_id}/comments", data=data, headers=headers)


def _field(page: str, name: str) -> str:
    match = re.search(r'name="' + name + r'" value="([^"]*)"', page)
    assert match, f"no {name} field in the page"
    return match.group(1)


def _button(page: str, name: str) -> str:
    match = re.search(r'<button type="submit" name="' + name + r'" value="([^"]*)"', page)
    assert match, f"no {name} button in the page"
    return match.group(1)


def change_status(client, case_id: int, action: str, *, htmx: bool = False):
    """Press Close or Reopen (`action`: "close" or "reopen") on the case page."""
    page = case_page(client, case_id)
    assert f'action="/cases/{case_id}/{action}"' in page, f"no {action} form on the case page"
    headers = {"HX-Request": "true"} if htmx else {}
    data = {"csrf_token": csrf_from(page)}
    return client.post(f"/cases/{case_id}/{action}", data=data, headers=headers)
