"""Small helpers shared by the tests."""

from __future__ import annotations

from tests.conftest import csrf_from


def mailbox_data(client, **overrides) -> dict:
    """A complete, valid Basic-auth mailbox form as a browser would post it."""
    token = csrf_from(client.get("/mailboxes/new").get_data(as_text=True))
    data = {
        "csrf_token": token,
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
        "folder": "INBOX",
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
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
