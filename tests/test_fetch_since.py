"""Fetch mail since, against the real Dovecot: IMAP by the server's received date (SEARCH
SINCE), POP3 by the Date header; Mailbox Setup says how many messages will be imported."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from tests.helpers.mailboxes import append, fetch, make_mailbox, update_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import cases_by_subject, mailbox_of, raw_by_subject, runs
from tests.helpers.web import api_mailbox_items, mailbox_data, on_dovecot, save_new_mailbox

SINCE = date(2026, 3, 1)
BEFORE = datetime(2026, 2, 20, 10, 0, tzinfo=UTC)
AFTER = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)


def _imap_on_both_sides(dovecot, test_ca, user) -> None:
    append(dovecot, test_ca, user, email("Old question"), received=BEFORE)
    append(dovecot, test_ca, user, email("New question"), received=AFTER)
    append(dovecot, test_ca, user, email("Old support"), folder="Support", received=BEFORE)
    append(dovecot, test_ca, user, email("New support"), folder="Support", received=AFTER)


def test_imap_imports_only_what_was_received_since_the_date(app_env, dovecot, test_ca, mail_user):
    _imap_on_both_sides(dovecot, test_ca, mail_user)
    box = make_mailbox(app_env, dovecot, mail_user, folders="INBOX\nSupport", fetch_since=SINCE)
    assert fetch(app_env, box)["state"] == "ok"
    assert sorted(cases_by_subject(app_env)) == ["New question", "New support"]


def test_imap_new_mail_after_the_first_fetch_still_arrives(app_env, dovecot, test_ca, mail_user):
    _imap_on_both_sides(dovecot, test_ca, mail_user)
    box = make_mailbox(app_env, dovecot, mail_user, fetch_since=SINCE)
    fetch(app_env, box)
    mail_user.deliver(email("Arrived today"))
    assert fetch(app_env, box)["new"] == 1
    assert "Arrived today" in cases_by_subject(app_env)


def test_a_date_moved_earlier_does_not_bring_back_what_was_passed(
    app_env, dovecot, test_ca, mail_user
):
    """Changing the date later only affects what has not been fetched yet."""
    _imap_on_both_sides(dovecot, test_ca, mail_user)
    box = make_mailbox(app_env, dovecot, mail_user, fetch_since=SINCE)
    fetch(app_env, box)
    update_mailbox(app_env, box, fetch_since=None)
    fetch(app_env, box)
    assert "Old question" not in cases_by_subject(app_env)


def test_pop3_imports_only_what_was_sent_since_the_date(app_env, dovecot, mail_user):
    mail_user.deliver(email("Old pop question", date=BEFORE))
    mail_user.deliver(email("New pop question", date=AFTER))
    box = make_mailbox(app_env, dovecot, mail_user, protocol="pop3s", fetch_since=SINCE)
    assert fetch(app_env, box)["state"] == "ok"
    assert sorted(cases_by_subject(app_env)) == ["New pop question"]


def test_pop3_sets_aside_the_earlier_message_with_the_reason(app_env, dovecot, mail_user):
    mail_user.deliver(email("Old pop question", date=BEFORE))
    box = make_mailbox(app_env, dovecot, mail_user, protocol="pop3s", fetch_since=SINCE)
    fetch(app_env, box)
    assert raw_by_subject(app_env, "Old pop question").state == "skipped"
    assert "before Fetch mail since (1 March 2026)" in runs(app_env, box)[-1].notes


def test_pop3_never_reads_a_set_aside_message_again(app_env, dovecot, mail_user):
    mail_user.deliver(email("Old pop question", date=BEFORE))
    box = make_mailbox(app_env, dovecot, mail_user, protocol="pop3s", fetch_since=SINCE)
    fetch(app_env, box)
    update_mailbox(app_env, box, fetch_since=None)
    assert fetch(app_env, box)["fetch_commands"] == 0
    assert cases_by_subject(app_env) == {}


def test_pop3_imports_a_message_without_a_date_header(app_env, dovecot, mail_user):
    raw = email("No date at all").replace(b"Date: ", b"X-Old-Date: ")
    mail_user.deliver(raw)
    box = make_mailbox(app_env, dovecot, mail_user, protocol="pop3s", fetch_since=SINCE)
    fetch(app_env, box)
    assert "No date at all" in cases_by_subject(app_env)


# -- Mailbox Setup, the form, the page and the API ---------------------------------


def _save(admin, dovecot, user, **overrides) -> int:
    overrides.setdefault("fetch_since", "2026-03-01")
    return save_new_mailbox(admin, **on_dovecot(dovecot, user, **overrides))


def test_setup_says_how_many_imap_messages_will_be_imported(
    admin, dovecot, test_ca, mail_user, run_worker
):
    _imap_on_both_sides(dovecot, test_ca, mail_user)
    box = _save(admin, dovecot, mail_user, folders="INBOX\nSupport")
    run_worker()
    page = admin.get(f"/mailboxes/{box}/setup").get_data(as_text=True)
    assert "2 of 4 messages will be imported" in page
    assert "received since 1 March 2026" in page


def _pop3_setup_page(admin, dovecot, user, run_worker, dates: list[datetime]) -> str:
    """Mailbox Setup of a POP3 mailbox holding messages with these Date headers."""
    for i, sent in enumerate(dates):
        user.deliver(email(f"Pop question {i}", date=sent))
    box = _save(admin, dovecot, user, protocol="pop3s", port=str(dovecot.pop3s_port))
    run_worker()
    return admin.get(f"/mailboxes/{box}/setup").get_data(as_text=True)


def test_setup_says_how_many_pop3_messages_will_be_imported(admin, dovecot, mail_user, run_worker):
    page = _pop3_setup_page(admin, dovecot, mail_user, run_worker, [BEFORE, AFTER, AFTER])
    assert "2 of 3 messages will be imported" in page
    assert "by their Date header" in page


def test_the_form_saves_the_date(admin, app):
    box = save_new_mailbox(admin, fetch_since="2026-03-01")
    assert mailbox_of(app, box).fetch_since == SINCE


def test_blank_means_everything(admin, app):
    box = save_new_mailbox(admin, fetch_since="")
    assert mailbox_of(app, box).fetch_since is None


def test_a_bad_date_is_refused_beside_the_field_and_kept(admin):
    page = admin.post(
        "/mailboxes/new", data=mailbox_data(admin, fetch_since="1st of March")
    ).get_data(as_text=True)
    field = re.search(r'<div class="field[^"]*" id="field-fetch_since">.*?</div>', page, re.S)
    assert "Enter the day as YYYY-MM-DD" in field.group(0)
    assert 'value="1st of March"' in field.group(0)


def test_the_help_says_a_change_affects_only_what_is_not_fetched_yet(admin):
    page = admin.get("/mailboxes/new").get_data(as_text=True)
    assert "Changing it later only affects messages not fetched yet." in page


def test_the_mailbox_page_shows_the_date(admin):
    box = save_new_mailbox(admin, fetch_since="2026-03-01")
    page = admin.get(f"/mailboxes/{box}").get_data(as_text=True)
    assert '<dd class="fetch-since">1 March 2026' in page


def test_the_api_gives_the_date(admin, client):
    save_new_mailbox(admin, fetch_since="2026-03-01")
    items = api_mailbox_items(admin, client)
    assert items[0]["fetch_since"] == "2026-03-01"


def test_the_api_gives_null_without_a_date(admin, client):
    save_new_mailbox(admin)
    items = api_mailbox_items(admin, client)
    assert items[0]["fetch_since"] is None


def test_setup_of_a_large_pop3_mailbox_says_the_date_header_decides(
    admin, dovecot, mail_user, run_worker, monkeypatch
):
    monkeypatch.setattr("webapp.mail.folders.POP3_PEEK_LIMIT", 1)  # as if it held thousands
    page = _pop3_setup_page(admin, dovecot, mail_user, run_worker, [BEFORE, AFTER])
    assert "2 messages in this mailbox" in page
    assert "each message is judged by its Date header when it is fetched" in page
