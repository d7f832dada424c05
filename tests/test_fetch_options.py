"""Fetch every, After fetching, Move to folder, Largest message (MB): form, mailbox page, API."""

from __future__ import annotations

import re

import pytest

from tests.helpers.rows import mailbox_of
from tests.helpers.web import api_token, csrf_from, mailbox_data

LABELS = ["Fetch every", "After fetching", "Move to folder", "Largest message (MB)"]


def _connection(page: str) -> str:
    return page[page.index('id="connection"') : page.index('id="section-handling"')]


def _field(page: str, name: str) -> str:
    match = re.search(r'<div class="field[^"]*" id="field-' + name + r'">(.*?)</div>', page, re.S)
    assert match, f"no field {name}"
    return match.group(1)


def _selected(page: str, name: str) -> str:
    match = re.search(r"<option selected [^>]*>([^<]+)</option>", _field(page, name))
    assert match, f"nothing selected in {name}"
    return match.group(1)


def _options(page: str, name: str) -> list[str]:
    return re.findall(r"<option[^>]*>([^<]+)</option>", _field(page, name))


def _save(admin, **fields) -> int:
    resp = admin.post("/mailboxes/new", data=mailbox_data(admin, **fields))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return int(re.search(r"/mailboxes/(\d+)/setup", resp.headers["Location"]).group(1))


@pytest.mark.parametrize("label", LABELS)
def test_the_connection_section_has_the_fetch_options(admin, label):
    connection = _connection(admin.get("/mailboxes/new").get_data(as_text=True))
    assert re.search(r'<label for="[^"]+">' + re.escape(label) + "</label>", connection)


def test_a_new_mailbox_fetches_every_minute(admin):
    assert (
        _selected(admin.get("/mailboxes/new").get_data(as_text=True), "fetch_interval_minutes")
        == "1 minute"
    )


def test_fetch_every_offers_the_product_intervals(admin):
    page = admin.get("/mailboxes/new").get_data(as_text=True)
    assert _options(page, "fetch_interval_minutes") == [
        "1 minute",
        "2 minutes",
        "5 minutes",
        "10 minutes",
        "15 minutes",
        "30 minutes",
        "60 minutes",
    ]


def test_a_new_mailbox_leaves_mail_on_the_server(admin):
    assert (
        _selected(admin.get("/mailboxes/new").get_data(as_text=True), "after_fetch")
        == "Leave on server"
    )


def test_imap_offers_the_four_choices(admin):
    assert _options(admin.get("/mailboxes/new").get_data(as_text=True), "after_fetch") == [
        "Leave on server",
        "Mark as read",
        "Move to folder",
        "Delete from server",
    ]


def test_a_new_mailbox_takes_messages_up_to_50_mb(admin):
    field = _field(admin.get("/mailboxes/new").get_data(as_text=True), "max_message_mb")
    assert 'value="50"' in field


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_message_mb", "lots", "Enter the size as a whole number of MB, between 1 and 1024."),
        ("max_message_mb", "0", "Enter a size between 1 and 1024 MB."),
        ("max_message_mb", "5000", "Enter a size between 1 and 1024 MB."),
        ("fetch_interval_minutes", "7", "Choose 1, 2, 5, 10, 15, 30 or 60 minutes."),
        ("after_fetch", "shred", "Choose what happens to a message on the server after fetching."),
    ],
)
def test_a_bad_value_is_shown_next_to_its_field(admin, app, field, value, message):
    resp = admin.post("/mailboxes/new", data=mailbox_data(admin, **{field: value}))
    assert resp.status_code == 422
    assert message in _field(resp.get_data(as_text=True), field)


def test_a_bad_size_is_kept_as_typed(admin):
    resp = admin.post("/mailboxes/new", data=mailbox_data(admin, max_message_mb="lots"))
    assert 'value="lots"' in _field(resp.get_data(as_text=True), "max_message_mb")


def test_live_validation_checks_the_size_as_it_is_typed(admin):
    data = mailbox_data(admin, max_message_mb="0")
    frag = admin.post(
        "/mailboxes/validate/max_message_mb", data=data, headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert frag.startswith('<div class="field has-error" id="field-max_message_mb">')


def test_move_needs_a_folder(admin):
    resp = admin.post("/mailboxes/new", data=mailbox_data(admin, after_fetch="move"))
    assert "Enter the folder that fetched messages are moved to." in _field(
        resp.get_data(as_text=True), "move_to_folder"
    )


def test_move_into_the_folder_that_is_read_is_refused(admin):
    data = mailbox_data(admin, after_fetch="move", move_to_folder="inbox")
    page = admin.post("/mailboxes/new", data=data).get_data(as_text=True)
    assert "Choose another folder than the ones that are read (Folders)." in _field(
        page, "move_to_folder"
    )


def test_the_choice_stays_selected_when_another_field_is_wrong(admin):
    data = mailbox_data(admin, after_fetch="move", move_to_folder="Archive/Done", name="")
    page = admin.post("/mailboxes/new", data=data).get_data(as_text=True)
    assert _selected(page, "after_fetch") == "Move to folder"
    assert 'value="Archive/Done"' in _field(page, "move_to_folder")


@pytest.mark.parametrize(
    "choice, saved",
    [
        ("leave", {"mark_as_read": False, "delete_after_fetch": False, "move_to_folder": ""}),
        ("read", {"mark_as_read": True, "delete_after_fetch": False, "move_to_folder": ""}),
        ("move", {"mark_as_read": False, "delete_after_fetch": False, "move_to_folder": "Done"}),
        ("delete", {"mark_as_read": False, "delete_after_fetch": True, "move_to_folder": ""}),
    ],
)
def test_after_fetching_is_saved(admin, app, choice, saved):
    box = mailbox_of(app, _save(admin, after_fetch=choice, move_to_folder="Done"))
    assert {name: getattr(box, name) for name in saved} == saved


def test_interval_and_size_are_saved(admin, app):
    box = mailbox_of(app, _save(admin, fetch_interval_minutes="15", max_message_mb="20"))
    assert (box.fetch_interval_seconds, box.max_message_bytes) == (900, 20 * 1024 * 1024)


def test_the_edit_form_shows_the_saved_choices(admin):
    box_id = _save(admin, after_fetch="move", move_to_folder="Done", fetch_interval_minutes="5")
    page = admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True)
    assert _selected(page, "after_fetch") == "Move to folder"
    assert 'value="Done"' in _field(page, "move_to_folder")
    assert _selected(page, "fetch_interval_minutes") == "5 minutes"


def test_the_mailbox_page_shows_the_choices(admin):
    box_id = _save(
        admin,
        after_fetch="move",
        move_to_folder="Done",
        fetch_interval_minutes="30",
        max_message_mb="20",
    )
    page = admin.get(f"/mailboxes/{box_id}").get_data(as_text=True)
    assert "<dt>After fetching</dt><dd" in page
    assert ">Move to folder: Done</dd>" in page
    assert ">20 MB</dd>" in page


def test_the_mailbox_page_says_how_often_it_fetches(admin, app, app_env):
    from tests.helpers.mailboxes import update_mailbox

    box_id = _save(admin, fetch_interval_minutes="30")
    update_mailbox(app_env, box_id, fetching_enabled=True)
    assert "on, every 30 minutes" in admin.get(f"/mailboxes/{box_id}").get_data(as_text=True)


def test_pop3_offers_leave_and_delete_only(admin):
    box_id = _save(admin, protocol="pop3s", port="995")
    page = admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True)
    assert _options(page, "after_fetch") == ["Leave on server", "Delete from server"]


def test_pop3_has_no_folder_to_move_to(admin):
    box_id = _save(admin, protocol="pop3s", port="995")
    page = admin.get(f"/mailboxes/{box_id}/edit").get_data(as_text=True)
    assert 'id="field-move_to_folder"' not in page


@pytest.mark.parametrize("choice", ["read", "move"])
def test_pop3_refuses_flags_and_folders(admin, choice):
    data = mailbox_data(
        admin, protocol="pop3s", port="995", after_fetch=choice, move_to_folder="Done"
    )
    resp = admin.post("/mailboxes/new", data=data)
    assert "POP3 can only leave messages on the server or delete them." in _field(
        resp.get_data(as_text=True), "after_fetch"
    )


def test_choosing_pop3_with_htmx_narrows_the_choices(admin):
    token = csrf_from(admin.get("/mailboxes/new").get_data(as_text=True))
    data = mailbox_data(admin, protocol="pop3s", csrf_token=token)
    headers = {"HX-Request": "true", "HX-Trigger-Name": "protocol"}
    fragment = admin.post("/mailboxes/form/connection", data=data, headers=headers)
    assert _options(fragment.get_data(as_text=True), "after_fetch") == [
        "Leave on server",
        "Delete from server",
    ]


def test_api_items_include_the_fetch_options(admin):
    _save(
        admin,
        after_fetch="move",
        move_to_folder="Done",
        fetch_interval_minutes="10",
        max_message_mb="20",
    )
    token = api_token(admin)
    item = admin.get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"}).get_json()[
        "items"
    ][0]
    assert {
        name: item[name]
        for name in (
            "fetch_interval_seconds",
            "after_fetch",
            "mark_as_read",
            "move_to_folder",
            "delete_after_fetch",
            "max_message_bytes",
        )
    } == {
        "fetch_interval_seconds": 600,
        "after_fetch": "move",
        "mark_as_read": False,
        "move_to_folder": "Done",
        "delete_after_fetch": False,
        "max_message_bytes": 20 * 1024 * 1024,
    }
