"""An OAuth mailbox saved through the form and authorized at the test provider."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import requests

from tests.helpers.web import csrf_from, mailbox_data


def oauth_form(admin, oauth_server, oauth_dovecot, user, client, **overrides) -> dict:
    """The mailbox form of an OAuth mailbox at the test provider, as a browser would post it."""
    fields = dict(
        auth_type="oauth",
        password="",
        email_address=user.email,
        host="127.0.0.1",
        port=str(oauth_dovecot.imaps_port),
        client_id=client.client_id,
        client_secret=client.client_secret,
        scope="mail",
        auth_url=oauth_server.authorize_url,
        token_url=oauth_server.token_url,
    )
    return mailbox_data(admin, **{**fields, **overrides})


def oauth_box(admin, oauth_server, oauth_dovecot, user, client, **overrides) -> int:
    data = oauth_form(admin, oauth_server, oauth_dovecot, user, client, **overrides)
    resp = admin.post("/mailboxes/new", data=data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return int(re.search(r"/mailboxes/(\d+)/setup", resp.headers["Location"]).group(1))


def consent(provider_url: str) -> str:
    """The test provider consents by itself: the callback path it sends the browser back to."""
    provider = requests.get(provider_url, allow_redirects=False, timeout=10)
    assert provider.status_code == 302
    back = urlsplit(provider.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://127.0.0.1:5000/oauth/callback"
    return f"{back.path}?{back.query}"


def code_of(callback: str) -> str:
    """The bare code: what the admin copies out of the address bar."""
    return parse_qs(urlsplit(callback).query)["code"][0]


def paste_code(admin, box_id: int, data: dict, pasted: str):
    """Paste a code (or a whole address) into Authorization Code on the edit form and Save."""
    token = csrf_from(admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True))
    form = {**data, "client_secret": "", "auth_code": pasted, "csrf_token": token}
    return admin.post(f"/mailboxes/{box_id}/edit", data=form, follow_redirects=True)


def authorize(admin, box_id) -> str:
    """Press Get Authorization Code; follow the provider's consent; return the callback path."""
    token = csrf_from(admin.get(f"/mailboxes/{box_id}/setup").get_data(as_text=True))
    resp = admin.post(f"/mailboxes/{box_id}/authorize", data={"csrf_token": token})
    assert resp.status_code == 303
    return consent(resp.headers["Location"])


def authorized_box(admin, app, oauth_server, oauth_dovecot, user, client) -> int:
    box_id = oauth_box(admin, oauth_server, oauth_dovecot, user, client)
    admin.get(authorize(admin, box_id))
    return box_id
