"""The mailbox form: labels, validation, secrets, HTMX fragments and the no-JS fallbacks."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from tests.helpers.web import csrf_from, mailbox_data
from webapp.db import new_session
from webapp.models import Mailbox

LABELS = [
    "Name",
    "Enabled",
    "Description",
    "Authentication Type",
    "Email Address",
    "Username",
    "Password",
    "Protocol",
    "Host",
    "Port",
    "Client ID",
    "Client Secret",
    "Scope",
    "Grant Type",
    "Auth URL",
    "Access Token URL",
    "Redirect URI",
    "Authorization Code",
    "Case Response Template",
    "Attachments",
    "Process Task Replies",
    "End of Message Marker",
    "Allow New Case to be Created",
    "Auto Acknowledgement Template",
    "Sender Email Address Filter",
    "Prevent spam by sending a confirmation to confirm that sender is a person",
    "Create New Contact",
]
SECTIONS = ["Mailbox Information", "Connection", "Email Handling", "Email Filtering"]
NEW_MAILBOX_PAGE = "/mailboxes/new"


def _mailboxes(app):
    with new_session(app.config["SETTINGS"].database_url) as db:
        return db.exec(select(Mailbox)).all()


def test_form_has_the_four_sections_and_every_label_word_for_word(admin):
    page = admin.get("/mailboxes/new").get_data(as_text=True)
    for section in SECTIONS:
        assert f"<legend>{section}</legend>" in page
    for label in LABELS:
        match = re.search(r'<label for="([^"]+)">' + re.escape(label) + "</label>", page)
        assert match, f"no <label for=…> with the text {label!r}"
        control = re.search(
            r'<(input|select|textarea)[^>]*\bid="' + re.escape(match.group(1)) + '"', page
        )
        assert control, f"label {label!r} points at no input, select or textarea"


def test_the_page_is_titled_new_mailbox(admin):
    page = admin.get(NEW_MAILBOX_PAGE).get_data(as_text=True)
    assert "<title>New Mailbox · mailchannel</title>" in page


def test_the_page_is_headed_new_mailbox(admin):
    page = admin.get(NEW_MAILBOX_PAGE).get_data(as_text=True)
    assert "<h1>New Mailbox</h1>" in page


def test_the_oauth_fieldset_is_headed_oauth_configuration(admin):
    page = admin.get(NEW_MAILBOX_PAGE).get_data(as_text=True)
    assert re.search(r'id="auth-oauth">\s*<legend>OAuth Configuration <small>', page)


def test_new_mailbox_starts_with_the_default_templates_selected(admin):
    page = admin.get("/mailboxes/new").get_data(as_text=True)
    assert re.search(r'<option selected value="1">Default case response</option>', page)
    assert re.search(r'<option selected value="2">Default auto acknowledgement</option>', page)


def test_redirect_uri_comes_from_external_url_not_the_host_header(admin):
    admin.set_cookie("session", admin.get_cookie("session").value, domain="evil.example")
    page = admin.get("/mailboxes/new", base_url="http://evil.example").get_data(as_text=True)
    assert "Connection" in page
    assert 'value="http://127.0.0.1:5000/oauth/callback" readonly' in page
    assert "evil.example" not in page


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("email_address", "not-an-address", "This is not a valid email address"),
        ("port", "70000", "Enter a port between 1 and 65535."),
        ("port", "abc", "Enter the port as a number between 1 and 65535."),
        ("host", "http://imap.example.com", "Enter a host name such as imap.example.com"),
        ("sender_filter", "allow: *@good.example\nblok: spam.example", "Line 2:"),
        ("name", "", "Give the mailbox a name."),
    ],
)
def test_bad_values_are_shown_next_to_the_field_and_everything_typed_is_kept(
    admin, app, field, value, message
):
    data = mailbox_data(admin, **{field: value, "description": "typed by hand"})
    resp = admin.post("/mailboxes/new", data=data)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    block = re.search(
        r'<div class="field[^"]*has-error[^"]*" id="field-' + field + r'">(.*?)</div>', page, re.S
    )
    assert block
    assert message in block.group(1)
    assert "typed by hand" in page
    if value:
        assert value.split("\n")[0] in page
    assert _mailboxes(app) == []


def test_oauth_requires_its_own_fields_and_ignores_the_password(admin, app):
    data = mailbox_data(
        admin, auth_type="oauth", password="", auth_url="http://accounts.example.com/x"
    )
    page = admin.post("/mailboxes/new", data=data).get_data(as_text=True)
    assert "Client ID is needed for OAuth." in page
    assert "Client Secret is needed for OAuth." in page
    assert "Use https://" in page
    assert "Enter the mailbox password" not in page


def test_basic_requires_a_password(admin):
    page = admin.post("/mailboxes/new", data=mailbox_data(admin, password="")).get_data(
        as_text=True
    )
    assert "Enter the mailbox password (or an app password)." in page


def test_http_urls_are_accepted_for_loopback_only(admin, app):
    data = mailbox_data(
        admin,
        auth_type="oauth",
        client_id="cid",
        client_secret="csecret",
        scope="mail",
        auth_url="http://127.0.0.1:9000/authorize",
        token_url="http://localhost:9000/token",
    )
    resp = admin.post("/mailboxes/new", data=data)
    assert resp.status_code == 302


def test_email_address_is_unique_case_insensitively(admin, app):
    assert admin.post("/mailboxes/new", data=mailbox_data(admin)).status_code == 302
    resp = admin.post(
        "/mailboxes/new", data=mailbox_data(admin, email_address="SUPPORT@Example.com")
    )
    assert resp.status_code == 422
    assert "Another mailbox already uses this email address." in resp.get_data(as_text=True)


def test_username_defaults_to_the_email_address(admin, app):
    admin.post("/mailboxes/new", data=mailbox_data(admin))
    assert _mailboxes(app)[0].username == "support@example.com"


def test_saved_secrets_are_encrypted_never_shown_and_kept_when_left_blank(admin, app, app_env):
    secret = "s3cret-Pa55word"
    admin.post("/mailboxes/new", data=mailbox_data(admin, password=secret))
    box = _mailboxes(app)[0]
    assert box.password_enc
    assert secret not in box.password_enc
    page = admin.get(f"/mailboxes/{box.id}/edit").get_data(as_text=True)
    assert secret not in page
    assert "A value is saved (not shown)" in page
    # Save again with the password left blank: the saved one stays.
    resp = admin.post(
        f"/mailboxes/{box.id}/edit", data=mailbox_data(admin, password="", name="Renamed")
    )
    assert resp.status_code == 302
    after = _mailboxes(app)[0]
    assert after.name == "Renamed"
    assert after.password_enc == box.password_enc
    # Nothing under instance/ nor in the database file holds the password in clear.
    from pathlib import Path

    db_file = Path(app_env["DATABASE_URL"].removeprefix("sqlite:///"))
    for path in [db_file, *Path(app_env["INSTANCE_PATH"]).rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_changing_oauth_settings_drops_old_tokens(admin, app):
    from webapp import crypto

    data = mailbox_data(
        admin,
        auth_type="oauth",
        client_id="cid",
        client_secret="csecret",
        scope="https://mail.google.com/",
        auth_url="https://a.example/auth",
        token_url="https://a.example/token",
    )
    admin.post("/mailboxes/new", data=data)
    with new_session(app.config["SETTINGS"].database_url) as db:
        box = db.exec(select(Mailbox)).one()
        box.access_token_enc = crypto.encrypt("old-token")
        db.add(box)
        db.commit()
        box_id = box.id
    admin.post(
        f"/mailboxes/{box_id}/edit", data={**data, "client_secret": "", "client_id": "other"}
    )
    assert _mailboxes(app)[0].access_token_enc is None


def test_htmx_auth_type_swaps_the_fieldsets(admin):
    token = csrf_from(admin.get("/mailboxes/new").get_data(as_text=True))
    data = mailbox_data(admin, auth_type="oauth")
    resp = admin.post(
        "/mailboxes/form/connection",
        data=data,
        headers={"HX-Request": "true", "HX-Trigger-Name": "auth_type", "X-CSRFToken": token},
    )
    frag = resp.get_data(as_text=True)
    assert frag.lstrip().startswith('<fieldset class="section" id="connection">')
    assert 'class="auth active" data-auth="oauth"' in frag
    assert 'class="auth" data-auth="basic"' in frag
    assert "<html" not in frag


@pytest.mark.parametrize(
    "provider, protocol, host, port, scope, auth_url",
    [
        (
            "gmail",
            "imaps",
            "imap.gmail.com",
            993,
            "https://mail.google.com/",
            "https://accounts.google.com/o/oauth2/v2/auth",
        ),
        (
            "gmail",
            "pop3s",
            "pop.gmail.com",
            995,
            "https://mail.google.com/",
            "https://accounts.google.com/o/oauth2/v2/auth",
        ),
        (
            "outlook",
            "imaps",
            "outlook.office365.com",
            993,
            "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
        ),
        (
            "outlook",
            "pop3s",
            "outlook.office365.com",
            995,
            "https://outlook.office.com/POP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
        ),
    ],
)
def test_presets_fill_the_providers_values(admin, provider, protocol, host, port, scope, auth_url):
    data = mailbox_data(
        admin,
        provider=provider,
        protocol=protocol,
        host="",
        port="",
        tenant="contoso.onmicrosoft.com",
        name="typed name",
    )
    # with HTMX: the Connection section comes back filled in
    frag = admin.post(
        "/mailboxes/form/connection",
        data=data,
        headers={"HX-Request": "true", "HX-Trigger-Name": "provider"},
    ).get_data(as_text=True)
    # without JavaScript: the Apply preset button re-renders the whole form
    page = admin.post("/mailboxes/new", data={**data, "action": "preset"}).get_data(as_text=True)
    for html in (frag, page):
        assert f'id="host" name="host" type="text" value="{host}"' in html
        assert f'value="{port}"' in html
        assert f'value="{scope}"' in html
        assert auth_url in html
    assert 'value="typed name"' in page


def test_protocol_change_sets_its_default_port(admin):
    data = mailbox_data(admin, protocol="pop3", port="993")
    frag = admin.post(
        "/mailboxes/form/connection",
        data=data,
        headers={"HX-Request": "true", "HX-Trigger-Name": "protocol"},
    ).get_data(as_text=True)
    assert 'id="port" name="port" type="number" value="110"' in frag or 'value="110"' in frag
    assert "unencrypted" in frag  # plain POP3 carries a warning
    data = mailbox_data(admin, protocol="imap", port="1143")
    frag = admin.post(
        "/mailboxes/form/connection",
        data=data,
        headers={"HX-Request": "true", "HX-Trigger-Name": "protocol"},
    ).get_data(as_text=True)
    assert 'value="1143"' in frag  # a port the admin typed is left alone


def test_live_validation_returns_just_the_field(admin, app):
    admin.post("/mailboxes/new", data=mailbox_data(admin))
    data = mailbox_data(admin, email_address="Support@example.com")
    frag = admin.post(
        "/mailboxes/validate/email_address", data=data, headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert frag.startswith('<div class="field has-error" id="field-email_address">')
    assert "Another mailbox already uses this email address." in frag
    assert 'value="Support@example.com"' in frag
    box_id = _mailboxes(app)[0].id
    frag = admin.post(
        f"/mailboxes/{box_id}/validate/email_address", data=data, headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert "has-error" not in frag  # its own address is no conflict


def test_htmx_save_shows_errors_inline_and_redirects_on_success(admin):
    data = mailbox_data(admin, port="0")
    resp = admin.post("/mailboxes/new", data=data, headers={"HX-Request": "true"})
    frag = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert frag.lstrip().startswith("<form")
    assert "<html" not in frag
    resp = admin.post("/mailboxes/new", data=mailbox_data(admin), headers={"HX-Request": "true"})
    assert resp.status_code == 204
    assert re.match(r"/mailboxes/\d+/setup", resp.headers["HX-Redirect"])


def test_without_javascript_both_auth_fieldsets_are_in_the_page(admin):
    page = admin.get("/mailboxes/new").get_data(as_text=True)
    assert 'data-auth="basic"' in page
    assert 'data-auth="oauth"' in page


def test_enable_disable_and_delete_with_confirmation(admin, app):
    admin.post("/mailboxes/new", data=mailbox_data(admin))
    box = _mailboxes(app)[0]
    token = csrf_from(admin.get("/mailboxes/").get_data(as_text=True))
    admin.post(f"/mailboxes/{box.id}/toggle", data={"csrf_token": token})
    assert _mailboxes(app)[0].enabled is False
    row = admin.post(
        f"/mailboxes/{box.id}/toggle", data={"csrf_token": token}, headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert row.lstrip().startswith(f'<tr id="mailbox-{box.id}">')
    assert "Disable" in row
    listing = admin.get("/mailboxes/").get_data(as_text=True)
    assert "Support" in listing
    assert "support@example.com" in listing
    assert "IMAPS" in listing
    confirm = admin.get(f"/mailboxes/{box.id}/delete").get_data(as_text=True)
    assert "Delete Support?" in confirm
    assert _mailboxes(app)
    admin.post(f"/mailboxes/{box.id}/delete", data={"csrf_token": token})
    assert _mailboxes(app) == []


def test_get_requests_never_change_anything(admin, app):
    admin.post("/mailboxes/new", data=mailbox_data(admin))
    box = _mailboxes(app)[0]
    for path in (
        f"/mailboxes/{box.id}/toggle",
        f"/mailboxes/{box.id}/continue",
        f"/mailboxes/{box.id}/verify",
    ):
        assert admin.get(path).status_code == 405
    admin.get(f"/mailboxes/{box.id}/delete")
    assert _mailboxes(app)[0].enabled is True


def test_confirmation_settings_are_saved_and_checked(admin, app):
    data = mailbox_data(
        admin, confirm_unknown_senders="y", authserv_id=" MX.Example.com ", confirmation_hours="0"
    )
    page = admin.post("/mailboxes/new", data=data).get_data(as_text=True)
    assert "Enter a number of hours between 1 and 1440." in page
    assert (
        admin.post("/mailboxes/new", data={**data, "confirmation_hours": "48"}).status_code == 302
    )
    box = _mailboxes(app)[0]
    assert box.authserv_id == "mx.example.com"
    assert box.confirmation_hours == 48
    assert box.confirm_unknown_senders is True
