"""Attachments: the first five kept, inline images not counted, a size limit, reasons shown."""

from __future__ import annotations

import base64
import re

from tests.helpers.mailboxes import fetch, make_mailbox

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _message(attachments: int, big: int = 0) -> bytes:
    parts = [
        "--b\r\nContent-Type: multipart/related; boundary=r\r\n\r\n"
        '--r\r\nContent-Type: text/html\r\n\r\n<p>Logo: <img src="cid:logo@x"></p>\r\n'
        "--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(PNG).decode()
        + "\r\n--r--\r\n"
    ]
    for i in range(attachments):
        parts.append(
            "--b\r\nContent-Type: application/pdf\r\n"
            f'Content-Disposition: attachment; filename="doc{i}.pdf"\r\n\r\n%PDF-{i}\r\n'
        )
    for i in range(big):
        payload = base64.b64encode(b"x" * (1024 * 1024 + 10)).decode()
        parts.append(
            "--b\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="big{i}.zip"\r\n\r\n{payload}\r\n'
        )
    head = (
        "From: Ada <ada@example.org>\r\nTo: support@example.com\r\nSubject: files\r\n"
        "Message-ID: <files@example.org>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    )
    return (head + "".join(parts) + "--b--\r\n").encode()


def _api_case(app, client) -> dict:
    token = app.test_cli_runner().invoke(args=["create-token", "t"]).output.strip().splitlines()[-1]
    body = client.get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"}).get_json()
    return body["items"][0]["messages"][0]


def test_seven_attachments_five_kept_inline_image_not_counted(
    admin, app, app_env, dovecot, mail_user
):
    mail_user.deliver(_message(7))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch(app_env, box)
    message = _api_case(app, admin)
    kept = [a["name"] for a in message["attachments"]]
    assert kept == ["image.png"] + [
        f"doc{i}.pdf" for i in range(5)
    ]  # the inline logo does not count
    assert [(a["name"], a["reason"]) for a in message["attachments_not_kept"]] == [
        (f"doc{i}.pdf", "only the first 5 attachments of a message are kept") for i in (5, 6)
    ]
    page = admin.get("/cases/").get_data(as_text=True)
    case_url = re.search(r'href="(/cases/\d+)"', page).group(1)
    case_page = admin.get(case_url).get_data(as_text=True)
    assert "doc6.pdf" in case_page
    assert "only the first 5 attachments" in case_page


def test_size_limit_and_attachments_off(admin, app, app_env, dovecot, mail_user):
    mail_user.deliver(_message(1, big=1))
    box = make_mailbox(app_env, dovecot, mail_user, max_attachment_bytes=1024 * 1024)
    fetch(app_env, box)
    message = _api_case(app, admin)
    assert [a["name"] for a in message["attachments"]] == ["image.png", "doc0.pdf"]
    assert message["attachments_not_kept"][0]["name"] == "big0.zip"
    assert (
        message["attachments_not_kept"][0]["reason"] == "larger than the 1 MB limit per attachment"
    )


def test_with_attachments_off_none_are_kept(admin, app, app_env, dovecot, mail_user):
    mail_user.deliver(_message(2))
    box = make_mailbox(app_env, dovecot, mail_user, keep_attachments=False)
    fetch(app_env, box)
    message = _api_case(app, admin)
    assert message["attachments"] == []
    assert {a["reason"] for a in message["attachments_not_kept"]} == {
        "this mailbox does not keep attachments (Attachments is off)"
    }
    assert len(message["attachments_not_kept"]) == 3  # the inline image is not stored either


def test_attachment_limit_is_a_form_field(admin, app):
    from sqlmodel import select

    from tests.helpers.web import mailbox_data
    from webapp.db import new_session
    from webapp.models import Mailbox

    page = admin.post("/mailboxes/new", data=mailbox_data(admin, max_attachment_mb="0")).get_data(
        as_text=True
    )
    assert "Enter a size between 1 and 1024 MB." in page
    assert (
        admin.post("/mailboxes/new", data=mailbox_data(admin, max_attachment_mb="3")).status_code
        == 302
    )
    with new_session(app.config["SETTINGS"].database_url) as db:
        assert db.exec(select(Mailbox)).one().max_attachment_bytes == 3 * 1024 * 1024
