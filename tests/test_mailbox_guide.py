"""The mailbox form as a guide: provider first, OAuth for Gmail and Microsoft 365, Advanced
folded, Mailbox Setup's next step and Edit settings, "Not set up", and the fetch log that
shows cases made and folds runs that found nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from tests.helpers.mailboxes import make_mailbox
from tests.helpers.messages import email
from tests.helpers.web import fetch_now, mailbox_data
from webapp import crypto
from webapp.db import new_session
from webapp.models import FetchRun, Mailbox
from webapp.services.fetching import status as fetch_status

NEW = "/mailboxes/new"


def _page(admin, url: str = NEW) -> str:
    return admin.get(url).get_data(as_text=True)


def _saved(app) -> Mailbox:
    with new_session(app.config["SETTINGS"].database_url) as db:
        return db.exec(select(Mailbox)).one()


def _box(app_env, **fields) -> int:
    """A mailbox straight in the database (no server behind it)."""
    crypto.configure([app_env["ENCRYPTION_KEY"]])
    values = {
        "name": "Support",
        "email_address": "support@example.com",
        "email_key": "support@example.com",
        "host": "imap.example.com",
        "port": 993,
        "password_enc": crypto.encrypt("pw"),
        **fields,
    }
    with new_session(app_env["DATABASE_URL"]) as db:
        box = Mailbox(**values)
        db.add(box)
        db.commit()
        return box.id


def _advanced(page: str) -> str:
    match = re.search(r'<details class="advanced" id="oauth-advanced"[^>]*>', page)
    assert match, "no Advanced details in the OAuth settings"
    return match.group(0)


def _provider_chosen(admin, provider: str) -> str:
    """With htmx: the fragments sent back when a provider radio button is chosen."""
    return admin.post(
        "/mailboxes/form/connection",
        data=mailbox_data(admin, provider=provider, host=""),
        headers={"HX-Request": "true", "HX-Trigger-Name": "provider"},
    ).get_data(as_text=True)


def _preset_applied(admin, provider: str) -> str:
    """Without JavaScript: the form after Apply preset."""
    data = mailbox_data(admin, provider=provider, host="", action="preset")
    return admin.post(NEW, data=data).get_data(as_text=True)


# --- the form -------------------------------------------------------------------------------


def test_the_provider_radio_buttons_come_before_every_other_field(admin):
    page = _page(admin)
    first_radio = page.index('type="radio" value="gmail"')
    assert first_radio < page.index('id="field-name"')


def test_the_provider_choices_are_gmail_microsoft_365_and_another_server(admin):
    labels = re.findall(
        r'<label class="choice"><input[^>]*name="provider"[^>]*> ([^<]+)</label>', _page(admin)
    )
    assert labels == ["Gmail", "Microsoft 365", "Another IMAP or POP3 server"]


def test_gmail_posted_without_an_auth_choice_is_saved_as_oauth(admin, app):
    data = mailbox_data(
        admin, provider="gmail", auth_type=None, host="", client_id="id", client_secret="s"
    )
    assert admin.post(NEW, data=data).status_code == 302
    assert _saved(app).auth_type == "oauth"


def test_gmail_posted_without_a_host_gets_googles_published_host(admin, app):
    data = mailbox_data(
        admin, provider="gmail", auth_type=None, host="", client_id="id", client_secret="s"
    )
    admin.post(NEW, data=data)
    assert _saved(app).host == "imap.gmail.com"


def test_another_server_posted_without_an_auth_choice_is_saved_as_basic(admin, app):
    assert admin.post(NEW, data=mailbox_data(admin, auth_type=None)).status_code == 302
    assert _saved(app).auth_type == "basic"


def test_an_explicit_basic_choice_for_gmail_is_kept(admin, app):
    data = mailbox_data(admin, provider="gmail", auth_type="basic", host="")
    admin.post(NEW, data=data)
    assert _saved(app).auth_type == "basic"


def test_choosing_microsoft_with_htmx_selects_oauth_out_of_band(admin):
    frag = _provider_chosen(admin, "outlook")
    select = re.search(r'(<select[^>]*id="auth_type"[^>]*>)(.*?)</select>', frag, re.S)
    assert 'hx-swap-oob="true"' in select.group(1)
    assert '<option selected value="oauth">' in select.group(2)


def test_choosing_gmail_with_htmx_clears_the_basic_warning(admin):
    frag = _provider_chosen(admin, "gmail")
    assert 'id="auth-warning" role="note" hx-swap-oob="true" hidden></small>' in frag


def test_apply_preset_without_javascript_selects_oauth_for_gmail(admin):
    page = _preset_applied(admin, "gmail")
    assert '<option selected value="oauth">OAuth</option>' in page


def test_the_advanced_oauth_settings_fold_under_advanced_for_gmail(admin):
    page = _preset_applied(admin, "gmail")
    advanced = page[page.index('id="oauth-advanced"') : page.index("</details>")]
    for name in ("scope", "grant_type", "auth_url", "token_url"):
        assert f'id="field-{name}"' in advanced


def test_advanced_is_folded_when_gmail_fills_it_in(admin):
    page = _preset_applied(admin, "gmail")
    assert " open" not in _advanced(page)


def test_advanced_opens_when_one_of_its_fields_has_an_error(admin):
    data = mailbox_data(
        admin,
        provider="gmail",
        auth_type="oauth",
        client_id="id",
        client_secret="s",
        auth_url="not a url",
    )
    page = admin.post(NEW, data=data).get_data(as_text=True)
    assert " open" in _advanced(page)


def test_advanced_is_open_for_another_server_that_has_no_preset(admin):
    assert " open" in _advanced(_page(admin))


def test_tenant_is_shown_for_microsoft_365(admin):
    page = _preset_applied(admin, "outlook")
    assert 'id="field-tenant"' in page


def test_tenant_is_not_shown_for_gmail(admin):
    page = _preset_applied(admin, "gmail")
    assert 'id="field-tenant"' not in page


def test_tenant_is_not_shown_for_another_server(admin):
    assert 'id="field-tenant"' not in _page(admin)


def test_password_comes_right_after_username(admin):
    fields = re.findall(r'id="field-([a-z_]+)"', _page(admin))
    assert fields[fields.index("username") + 1] == "password"


def test_the_confirmation_settings_are_marked_to_fold_with_their_parent(admin):
    page = _page(admin)
    assert re.search(
        r'data-folds-when-off="confirm_unknown_senders">\s*<div class="field" id="field-authserv_id"',
        page,
    )


def test_the_no_new_case_template_is_marked_to_fold_while_new_cases_are_allowed(admin):
    page = _page(admin)
    assert re.search(
        r'data-folds-when-on="allow_new_case"><div class="field" id="field-no_new_case_template_id"',
        page,
    )


def test_the_folding_options_are_not_hidden_in_the_html(admin):
    """Without JavaScript they stay visible: only app.js hides them."""
    page = _page(admin)
    assert not re.search(r"data-folds-when-(on|off)=\"[^\"]+\"[^>]*hidden", page)


# --- Mailbox Setup ----------------------------------------------------------------------------


def _not_authorized(app_env) -> int:
    return _box(
        app_env,
        auth_type="oauth",
        provider="gmail",
        host="imap.gmail.com",
        verify_state="error",
        last_error_kind="oauth_needed",
        last_error="This mailbox is not authorized yet.",
        last_error_advice="Click “Get Authorization Code”.",
    )


def test_not_authorized_yet_has_one_primary_button(admin, app_env):
    page = _page(admin, f"/mailboxes/{_not_authorized(app_env)}/setup")
    assert len(re.findall(r'class="(?:button )?primary', page)) == 1


def test_not_authorized_yet_makes_get_authorization_code_the_primary_button(admin, app_env):
    page = _page(admin, f"/mailboxes/{_not_authorized(app_env)}/setup")
    assert re.search(r'<button type="submit" class="primary">Get Authorization Code</button>', page)


def test_not_authorized_yet_is_not_shown_as_an_error(admin, app_env):
    page = _page(admin, f"/mailboxes/{_not_authorized(app_env)}/setup")
    progress = page[page.index('id="setup-progress"') :]
    assert 'class="result error"' not in progress


def test_not_authorized_yet_is_shown_as_the_next_step(admin, app_env):
    page = _page(admin, f"/mailboxes/{_not_authorized(app_env)}/setup")
    assert re.search(r'<div class="result next" role="status">\s*<p><strong>Next step', page)


def test_not_authorized_yet_still_says_so(admin, app_env):
    page = _page(admin, f"/mailboxes/{_not_authorized(app_env)}/setup")
    assert "This mailbox is not authorized yet." in page


def test_a_rejected_password_makes_edit_settings_open_the_password(
    admin, app_env, dovecot, mail_user, run_worker
):
    data = mailbox_data(
        admin,
        email_address=mail_user.email,
        password="not-the-password",
        port=str(dovecot.imaps_port),
    )
    setup_url = admin.post(NEW, data=data).headers["Location"]
    run_worker()
    page = _page(admin, setup_url)
    link = re.search(
        r'<a class="button primary edit-settings" href="([^"]+)">Edit settings</a>', page
    )
    assert link, "no primary Edit settings"
    assert link.group(1).endswith("/edit?focus=password#field-password")


def test_a_refused_connection_makes_edit_settings_open_the_port(admin, app_env):
    box = _box(app_env, verify_state="error", last_error_kind="connection_refused", last_error="x")
    page = _page(admin, f"/mailboxes/{box}/setup")
    assert f'href="/mailboxes/{box}/edit?focus=port#field-port">Edit settings' in page


def test_a_missing_folder_makes_edit_settings_open_the_folders(admin, app_env):
    box = _box(app_env, verify_state="error", last_error_kind="folder_not_found", last_error="x")
    page = _page(admin, f"/mailboxes/{box}/setup")
    assert f'href="/mailboxes/{box}/edit?focus=folders#field-folders">Edit settings' in page


def test_a_failed_check_leaves_check_again_secondary(admin, app_env):
    box = _box(app_env, verify_state="error", last_error_kind="host_not_found", last_error="x")
    page = _page(admin, f"/mailboxes/{box}/setup")
    assert '<button type="submit" class="secondary">Check again</button>' in page


def test_the_edit_form_highlights_the_field_to_fix(admin, app_env):
    box = _box(app_env)
    page = _page(admin, f"/mailboxes/{box}/edit?focus=host")
    assert '<div class="field focus" id="field-host">' in page


def test_the_field_to_fix_gets_the_focus(admin, app_env):
    box = _box(app_env)
    page = _page(admin, f"/mailboxes/{box}/edit?focus=host")
    assert re.search(r'<input autofocus[^>]*id="host"', page)


def test_an_unknown_focus_highlights_nothing(admin, app_env):
    box = _box(app_env)
    page = _page(admin, f"/mailboxes/{box}/edit?focus=csrf_tokenx")
    assert "field focus" not in page


# --- the list -------------------------------------------------------------------------------


def _row(page: str, box: int) -> str:
    return re.search(rf'<tr id="mailbox-{box}">(.*?)</tr>', page, re.S).group(1)


def test_a_mailbox_never_checked_successfully_is_listed_as_not_set_up(admin, app_env):
    box = _box(app_env, verify_state="error", last_error_kind="auth", enabled=True)
    assert "Not set up" in _row(_page(admin, "/mailboxes/"), box)


def test_a_mailbox_never_checked_successfully_is_not_listed_as_enabled(admin, app_env):
    box = _box(app_env, verify_state="error", last_error_kind="auth", enabled=True)
    enabled = re.search(
        r'<td class="enabled"[^>]*>(.*?)</td>', _row(_page(admin, "/mailboxes/"), box)
    )
    assert "Yes" not in enabled.group(1)


def test_a_mailbox_not_authorized_yet_is_not_listed_as_an_error(admin, app_env):
    box = _not_authorized(app_env)
    assert "status-error" not in _row(_page(admin, "/mailboxes/"), box)


def test_a_checked_mailbox_is_listed_as_enabled(admin, app_env):
    box = _box(
        app_env, verify_state="ok", verified_at=datetime(2026, 1, 1, tzinfo=UTC), enabled=True
    )
    enabled = re.search(
        r'<td class="enabled"[^>]*>(.*?)</td>', _row(_page(admin, "/mailboxes/"), box)
    )
    assert enabled.group(1) == "Yes"


# --- the mailbox page -------------------------------------------------------------------------


def _fact(page: str, name: str) -> str:
    match = re.search(rf"<dt>{name}</dt><dd[^>]*>(.*?)</dd>", page, re.S)
    assert match, name
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_the_mailbox_page_shows_cases_made_beside_messages_fetched(
    admin, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(email("First question"))
    mail_user.deliver(email("Second question"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch_now(admin, box, run_worker)
    page = _page(admin, f"/mailboxes/{box}")
    assert _fact(page, "Cases made") == "2"


def test_the_fetch_log_shows_the_cases_each_run_made(
    admin, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(email("First question"))
    box = make_mailbox(app_env, dovecot, mail_user)
    fetch_now(admin, box, run_worker)
    page = _page(admin, f"/mailboxes/{box}")
    assert re.search(r'<td class="run-cases">1</td>', page)


def _runs(app_env, box: int, runs: list[dict]) -> None:
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    with new_session(app_env["DATABASE_URL"]) as db:
        for minute, fields in enumerate(runs, start=1):
            started = start + timedelta(minutes=minute)
            values = {"state": "ok", "finished_at": started + timedelta(seconds=2), **fields}
            db.add(FetchRun(mailbox_id=box, started_at=started, **values))
        db.commit()


def test_fourteen_empty_runs_in_a_row_are_one_line_of_the_log(admin, app_env):
    box = _box(app_env, verify_state="ok")
    _runs(app_env, box, [{}] * 14)
    page = _page(admin, f"/mailboxes/{box}")
    assert "14 checks, nothing new, 10:01–10:14" in page


def test_empty_runs_fold_on_either_side_of_a_run_that_found_mail(app_env):
    box = _box(app_env, verify_state="ok")
    _runs(app_env, box, [{}] * 3 + [{"new_messages": 2}] + [{}] * 4)
    with new_session(app_env["DATABASE_URL"]) as db:
        log = fetch_status.fetch_log(db, box)
    shapes = [len(e.runs) if e.quiet else e.run.new_messages for e in log]
    assert shapes == [4, 2, 3]


def test_a_failed_run_is_never_folded(app_env):
    box = _box(app_env, verify_state="ok")
    _runs(app_env, box, [{}, {"state": "error", "error": "refused"}, {}])
    with new_session(app_env["DATABASE_URL"]) as db:
        log = fetch_status.fetch_log(db, box)
    assert [e.quiet for e in log] == [False, False, False]


def test_live_validation_of_a_google_host_sends_the_warning_as_html(admin):
    data = mailbox_data(admin, auth_type="", host="imap.gmail.com")
    frag = admin.post(
        "/mailboxes/validate/host",
        data=data,
        headers={"HX-Request": "true", "X-CSRFToken": data["csrf_token"]},
    ).get_data(as_text=True)
    assert '<small class="warning" id="auth-warning" role="note" hx-swap-oob="true">' in frag
