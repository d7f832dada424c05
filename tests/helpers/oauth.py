"""An OAuth mailbox saved through the form and authorized at the test provider."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests

from tests.helpers.web import csrf_from, mailbox_data


def oauth_box(admin, oauth_server, oauth_dovecot, user, client, **overrides) -> int:
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
    data = mailbox_data(admin, **{**fields, **overrides})
    resp = admin.post("/mailboxes/new", data=data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return int(re.search(r"/mailboxes/(\d+)/setup", resp.headers["Location"]).group(1))


def authorize(admin, box_id) -> str:
    """Press Get Authorization Code; follow the provider's consent; return the callback path."""
    token = csrf_from(admin.get(f"/mailboxes/{box_id}/setup").get_data(as_text=True))
    resp = admin.post(f"/mailboxes/{box_id}/authorize", data={"csrf_token": token})
    assert resp.status_code == 303
    provider = requests.get(resp.headers["Location"], allow_redirects=False, timeout=10)
    assert provider.status_code == 302
    back = urlsplit(provider.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://127.0.0.1:5000/oauth/callback"
    return f"{back.path}?{back.query}"


def authorized_box(admin, app, oauth_server, oauth_dovecot, user, client) -> int:
    box_id = oauth_box(admin, oauth_server, oauth_dovecot, user, client)
    admin.get(authorize(admin, box_id))
    return box_id
