"""Contacts: the list with search and pages, editing a name, merging duplicates."""

from __future__ import annotations

from sqlmodel import col, select

from tests.helpers.mailboxes import deliver_and_fetch, make_mailbox
from tests.helpers.rows import case_of_raw, contact, contact_keys
from tests.helpers.web import csrf_from
from webapp.db import new_session
from webapp.models import Case, CaseParticipant, Contact, ContactAlias, Message


def _contacts(env, count: int, name: str = "Person") -> None:
    with new_session(env["DATABASE_URL"]) as db:
        for i in range(count):
            db.add(Contact(email=f"p{i:03d}@example.org", email_key=f"p{i:03d}@example.org",
                           name=f"{name} {i:03d}"))  # fmt: skip
        db.commit()


def test_the_list_searches_and_pages(admin, app_env):
    _contacts(app_env, 60)
    _contacts_extra = [("Zed Quux", "ZED@Quux.Example"), ("", "100%_sure@example.net")]
    with new_session(app_env["DATABASE_URL"]) as db:
        for name, address in _contacts_extra:
            db.add(Contact(email=address, email_key=address.lower(), name=name))
        db.commit()
    page = admin.get("/contacts/").get_data(as_text=True)
    assert "62 contacts" in page
    assert "Person 000" in page
    assert "Person 049" in page
    assert "Person 050" not in page
    assert 'rel="next"' in page
    second = admin.get("/contacts/?page=2").get_data(as_text=True)
    assert "Person 050" in second
    assert "Zed Quux" in second
    assert "Person 000" not in second
    found = admin.get("/contacts/?q=quux").get_data(as_text=True)
    assert "1 contact " in found
    assert "Zed Quux" in found
    assert "Person" not in found
    by_address = admin.get("/contacts/?q=P059@").get_data(as_text=True)
    assert "Person 059" in by_address
    assert "Person 058" not in by_address
    # LIKE wildcards in the search are taken literally
    literal = admin.get("/contacts/?q=100%25_").get_data(as_text=True)
    assert "100%_sure@example.net" in literal
    assert "Person" not in literal
    assert "No contact matches" in admin.get("/contacts/?q=nobody-at-all").get_data(as_text=True)
    assert "There is no page 9" in admin.get("/contacts/?page=9").get_data(as_text=True)


def test_editing_a_name(admin, app_env):
    _contacts(app_env, 1)
    with new_session(app_env["DATABASE_URL"]) as db:
        person = db.exec(select(Contact)).one()
    page = admin.get(f"/contacts/{person.id}").get_data(as_text=True)
    resp = admin.post(f"/contacts/{person.id}",
                      data={"csrf_token": csrf_from(page), "name": "  Ada   Lovelace "})  # fmt: skip
    assert resp.status_code == 302
    assert contact(app_env, person.email_key).name == "Ada Lovelace"
    too_long = admin.post(f"/contacts/{person.id}",
                          data={"csrf_token": csrf_from(page), "name": "x" * 201})  # fmt: skip
    assert too_long.status_code == 422
    assert "at most 200" in too_long.get_data(as_text=True)
    no_csrf = admin.post(f"/contacts/{person.id}", data={"name": "Mallory"})
    assert no_csrf.status_code == 400
    assert contact(app_env, person.email_key).name == "Ada Lovelace"
    assert admin.get("/contacts/99999").status_code == 404


def test_merging_duplicates_moves_cases_messages_and_participation(
    admin, app_env, dovecot, mail_user
):
    box = make_mailbox(app_env, dovecot, mail_user, initial_fetch_done=True)
    deliver_and_fetch(app_env, box, mail_user, "From work",
                             sender="Ada Lovelace <ada@work.example>")  # fmt: skip
    home = deliver_and_fetch(app_env, box, mail_user, "From home", sender="ada@home.example",
                             cc="bob@example.org", message_id="<home1@x>")  # fmt: skip
    deliver_and_fetch(app_env, box, mail_user, "Re: From home", sender="ada@home.example",
                      in_reply_to="<home1@x>")  # fmt: skip
    keep, other = contact(app_env, "ada@work.example"), contact(app_env, "ada@home.example")
    home_case = case_of_raw(app_env, home.id)

    page = admin.get(f"/contacts/{keep.id}").get_data(as_text=True)
    # possible duplicates are suggested (same mailbox name at another domain)
    assert f"/contacts/{keep.id}/merge?other=ada@home.example" in page
    review = admin.get(f"/contacts/{keep.id}/merge?other=ada@home.example")
    text = review.get_data(as_text=True)
    assert review.status_code == 200
    assert "1 case and 2 messages" in text
    assert contact(app_env, "ada@home.example") is not None  # reviewing changes nothing
    unknown = admin.get(f"/contacts/{keep.id}/merge?other=nobody@example.org")
    assert unknown.status_code == 422
    assert "No contact has this address" in unknown.get_data(as_text=True)
    itself = admin.get(f"/contacts/{keep.id}/merge?other=ada@work.example")
    assert itself.status_code == 422

    resp = admin.post(f"/contacts/{keep.id}/merge",
                      data={"csrf_token": csrf_from(text), "other": str(other.id), "confirm": "yes"})  # fmt: skip
    assert resp.status_code == 302
    assert contact_keys(app_env) == ["ada@work.example"]
    with new_session(app_env["DATABASE_URL"]) as db:
        assert db.get(Case, home_case.id).contact_id == keep.id
        messages = db.exec(select(Message).where(Message.case_id == home_case.id)).all()
        assert {m.contact_id for m in messages} == {keep.id}
        taking_part = db.exec(
            select(CaseParticipant.email_key)
            .where(CaseParticipant.case_id == home_case.id)
            .order_by(col(CaseParticipant.email_key))
        ).all()
        assert taking_part == ["ada@home.example", "ada@work.example", "bob@example.org"]
        (alias,) = db.exec(select(ContactAlias)).all()
        assert alias.email_key == "ada@home.example"
        assert alias.contact_id == keep.id
    page = admin.get(f"/contacts/{keep.id}").get_data(as_text=True)
    assert "Also writes from" in page
    assert "ada@home.example" in page
    assert "From home" in page

    # new mail from the merged-away address finds the kept contact, and makes none
    later = deliver_and_fetch(app_env, box, mail_user, "Home again", sender="ADA@home.example")
    assert case_of_raw(app_env, later.id).contact_id == keep.id
    assert contact_keys(app_env) == ["ada@work.example"]
    # the kept address may now use the home case's token: it takes part
    token = deliver_and_fetch(app_env, box, mail_user, f"News? [#{home_case.number}]",
                              sender="ada@work.example")  # fmt: skip
    assert case_of_raw(app_env, token.id).id == home_case.id


def test_a_merged_address_counts_as_known_for_filtering(admin, app_env, dovecot, mail_user):
    box = make_mailbox(app_env, dovecot, mail_user, initial_fetch_done=True)
    deliver_and_fetch(app_env, box, mail_user, "One", sender="kim@one.example")
    deliver_and_fetch(app_env, box, mail_user, "Two", sender="kim@two.example")
    keep, other = contact(app_env, "kim@one.example"), contact(app_env, "kim@two.example")
    page = admin.get(f"/contacts/{keep.id}/merge?other={other.id}").get_data(as_text=True)
    admin.post(f"/contacts/{keep.id}/merge",
               data={"csrf_token": csrf_from(page), "other": other.id, "confirm": "yes"})  # fmt: skip
    from tests.helpers.mailboxes import update_mailbox

    update_mailbox(app_env, box, create_new_contact=False)
    again = deliver_and_fetch(app_env, box, mail_user, "Three", sender="kim@two.example")
    assert again.state == "done"
    assert case_of_raw(app_env, again.id).contact_id == keep.id
