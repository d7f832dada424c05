"""Folders against the real Dovecot: a fetch reads every chosen folder with its own cursor, and
Mailbox Setup lists the server's folders with their counts as checkboxes."""

from __future__ import annotations

import re

from sqlmodel import select

from tests.helpers.mailboxes import fetch, make_mailbox, update_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import cases_by_subject, mailbox, mailbox_of, raw_by_subject, runs
from tests.helpers.web import (
    api_mailbox_items,
    csrf_from,
    mailbox_data,
    on_dovecot,
    save_new_mailbox,
)
from webapp.db import new_session
from webapp.models import FetchCursor
from webapp.services.fetching.verify import run_verification
from webapp.services.ingest.rows import reprocess


def _cursors(env, box) -> dict[str, int]:
    with new_session(env["DATABASE_URL"]) as db:
        rows = db.exec(select(FetchCursor).where(FetchCursor.mailbox_id == box)).all()
        return {row.folder: row.last_uid for row in rows}


def _two_folders(app_env, dovecot, user, **fields) -> int:
    user.deliver(email("In the inbox"))
    user.deliver(email("Filed under support 1"), folder="Support")
    user.deliver(email("Filed under support 2"), folder="Support")
    return make_mailbox(app_env, dovecot, user, folders="INBOX\nSupport", **fields)


def test_messages_in_a_second_folder_become_cases(app_env, dovecot, mail_user):
    box = _two_folders(app_env, dovecot, mail_user)
    result = fetch(app_env, box)
    assert result["state"] == "ok"
    cases = cases_by_subject(app_env)
    assert "Filed under support 1" in cases
    assert "Filed under support 2" in cases
    assert "In the inbox" in cases


def test_each_folder_keeps_its_own_cursor(app_env, dovecot, mail_user):
    box = _two_folders(app_env, dovecot, mail_user)
    fetch(app_env, box)
    assert _cursors(app_env, box) == {"INBOX": 1, "Support": 2}


def test_a_later_fetch_gets_only_the_new_mail_of_both_folders(app_env, dovecot, mail_user):
    box = _two_folders(app_env, dovecot, mail_user)
    fetch(app_env, box)
    mail_user.deliver(email("New in the inbox"))
    mail_user.deliver(email("New under support"), folder="Support")
    result = fetch(app_env, box)
    assert result["new"] == 2
    assert len(cases_by_subject(app_env)) == 5
    assert _cursors(app_env, box) == {"INBOX": 2, "Support": 3}


def test_an_unchanged_mailbox_downloads_nothing_from_either_folder(app_env, dovecot, mail_user):
    box = _two_folders(app_env, dovecot, mail_user)
    fetch(app_env, box)
    assert fetch(app_env, box)["fetch_commands"] == 0


def test_a_missing_folder_is_reported_and_the_others_are_fetched(app_env, dovecot, mail_user):
    mail_user.deliver(email("Still fetched"))
    box = make_mailbox(app_env, dovecot, mail_user, folders="Nope\nINBOX")
    result = fetch(app_env, box)
    assert result["state"] == "error"
    assert "Still fetched" in cases_by_subject(app_env)
    assert "The folder Nope does not exist" in runs(app_env, box)[-1].error


def test_a_folder_added_later_brings_its_old_mail_as_backlog(app_env, dovecot, mail_user):
    mail_user.deliver(email("Old support mail"), folder="Support")
    box = make_mailbox(app_env, dovecot, mail_user, initial_fetch_done=True)
    fetch(app_env, box)
    update_mailbox(app_env, box, folders="INBOX\nSupport")
    fetch(app_env, box)
    mail_user.deliver(email("New support mail"), folder="Support")
    fetch(app_env, box)
    assert raw_by_subject(app_env, "Old support mail").backlog is True
    assert raw_by_subject(app_env, "New support mail").backlog is False


# -- Mailbox Setup ---------------------------------------------------------------


def _save(admin, dovecot, user, **overrides) -> int:
    return save_new_mailbox(admin, **on_dovecot(dovecot, user, **overrides))


def _checkbox(page: str, name: str) -> str:
    found = re.search(
        rf'<input type="checkbox" name="folders" value="{name}"[^>]*>[^<]*<small[^>]*>[^<]*</small>',
        page,
    )
    assert found, f"no checkbox for {name}"
    return found.group(0)


def test_setup_lists_the_servers_folders_with_their_counts(admin, dovecot, mail_user, run_worker):
    for i in range(3):
        mail_user.deliver(email(f"Support {i}"), folder="Support")
    mail_user.deliver(email("Inbox 1"))
    box = _save(admin, dovecot, mail_user)
    run_worker()
    page = admin.get(f"/mailboxes/{box}/setup").get_data(as_text=True)
    assert "(3 messages)" in _checkbox(page, "Support")
    assert " checked" not in _checkbox(page, "Support")
    assert " checked" in _checkbox(page, "INBOX")
    assert "1 message in this mailbox" in page


def test_ticking_a_folder_updates_the_setting_and_counts_both(
    admin, app, dovecot, mail_user, run_worker
):
    for i in range(3):
        mail_user.deliver(email(f"Support {i}"), folder="Support")
    mail_user.deliver(email("Inbox 1"))
    box = _save(admin, dovecot, mail_user)
    run_worker()
    token = csrf_from(admin.get(f"/mailboxes/{box}/setup").get_data(as_text=True))
    resp = admin.post(
        f"/mailboxes/{box}/folders", data={"csrf_token": token, "folders": ["INBOX", "Support"]}
    )
    assert resp.status_code == 302
    assert mailbox_of(app, box).folder_list == ["INBOX", "Support"]
    run_worker()
    page = admin.get(f"/mailboxes/{box}/setup").get_data(as_text=True)
    assert "4 messages in 2 folders" in page
    assert " checked" in _checkbox(page, "Support")


def test_unticking_every_folder_is_refused(admin, app, dovecot, mail_user, run_worker):
    box = _save(admin, dovecot, mail_user)
    run_worker()
    token = csrf_from(admin.get(f"/mailboxes/{box}/setup").get_data(as_text=True))
    resp = admin.post(f"/mailboxes/{box}/folders", data={"csrf_token": token})
    assert "Tick at least one folder" in admin.get(resp.headers["Location"]).get_data(as_text=True)
    assert mailbox_of(app, box).folder_list == ["INBOX"]


def test_htmx_gets_the_setup_block_back_after_a_tick(admin, dovecot, mail_user, run_worker):
    mail_user.deliver(email("Support 1"), folder="Support")
    box = _save(admin, dovecot, mail_user)
    run_worker()
    token = csrf_from(admin.get(f"/mailboxes/{box}/setup").get_data(as_text=True))
    resp = admin.post(
        f"/mailboxes/{box}/folders",
        data={"csrf_token": token, "folders": ["Support"]},
        headers={"HX-Request": "true"},
    )
    assert resp.get_data(as_text=True).lstrip().startswith('<section id="setup-progress"')


# -- The form and the API ----------------------------------------------------------


def test_blank_folders_mean_inbox(admin, app):
    box = save_new_mailbox(admin, folders="  \n")
    assert mailbox_of(app, box).folders == "INBOX"


def test_repeated_folders_are_kept_once(admin, app):
    box = save_new_mailbox(admin, folders="Support\ninbox\nSupport\n INBOX \nSales")
    assert mailbox_of(app, box).folder_list == ["Support", "INBOX", "Sales"]


def test_moving_into_a_folder_that_is_read_is_refused_beside_move_to(admin):
    data = mailbox_data(
        admin, folders="INBOX\nSupport", after_fetch="move", move_to_folder="Support"
    )
    page = admin.post("/mailboxes/new", data=data).get_data(as_text=True)
    field = re.search(r'<div class="field[^"]*" id="field-move_to_folder">.*?</div>', page, re.S)
    assert "Choose another folder than the ones that are read (Folders)." in field.group(0)


def test_the_form_keeps_the_folders_one_per_line(admin):
    box = save_new_mailbox(admin, folders="INBOX\nSupport")
    page = admin.get(f"/mailboxes/{box}/edit").get_data(as_text=True)
    assert re.search(r'<textarea[^>]*name="folders"[^>]*>\s*INBOX\r?\nSupport</textarea>', page)


def test_the_mailbox_page_names_the_folders(admin):
    box = save_new_mailbox(admin, folders="INBOX\nSupport")
    page = admin.get(f"/mailboxes/{box}").get_data(as_text=True)
    assert '<dd class="folders">INBOX, Support</dd>' in page


def test_the_api_lists_the_folders(admin, client):
    save_new_mailbox(admin, folders="INBOX\nSupport")
    items = api_mailbox_items(admin, client)
    assert items[0]["folders"] == ["INBOX", "Support"]


def test_a_check_counts_only_the_chosen_folders_and_lists_all(app_env, dovecot, mail_user):
    mail_user.deliver(email("Support 1"), folder="Support")
    mail_user.deliver(email("Inbox 1"))
    mail_user.deliver(email("Inbox 2"))
    box = make_mailbox(app_env, dovecot, mail_user, folders="Support")
    with new_session(app_env["DATABASE_URL"]) as db:
        run_verification(db, box, app_env["MAIL_CA_BUNDLE"])
    checked = mailbox(app_env, box)
    assert checked.message_count == 1
    assert {"name": "INBOX", "messages": 2} in checked.server_folders


def test_the_move_to_folder_cannot_be_ticked_as_a_read_folder(
    admin, app, dovecot, mail_user, run_worker
):
    mail_user.deliver(email("Already filed"), folder="Done")
    box = _save(admin, dovecot, mail_user, after_fetch="move", move_to_folder="Done")
    run_worker()
    token = csrf_from(admin.get(f"/mailboxes/{box}/setup").get_data(as_text=True))
    resp = admin.post(
        f"/mailboxes/{box}/folders", data={"csrf_token": token, "folders": ["INBOX", "Done"]}
    )
    page = admin.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Done is where fetched messages are moved to" in page
    assert mailbox_of(app, box).folder_list == ["INBOX"]


def test_a_too_large_message_in_the_second_folder_is_downloaded_after_reprocess(
    app_env, dovecot, mail_user
):
    mail_user.deliver(email("Big support mail", body="b" * 400_000 + "\n"), folder="Support")
    box = make_mailbox(
        app_env, dovecot, mail_user, folders="INBOX\nSupport", max_message_bytes=350_000
    )
    fetch(app_env, box)
    with new_session(app_env["DATABASE_URL"]) as db:
        assert reprocess(db, raw_by_subject(app_env, "Big support mail").id) == "refetch"
    update_mailbox(app_env, box, max_message_bytes=1_000_000)
    fetch(app_env, box)
    assert "Big support mail" in cases_by_subject(app_env)
