"""Paging through the case list and the API: in any order, on both databases, the pages
together hold every case once (the back half is read from the end, the API by keyset)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, insert, update
from sqlmodel import select

from tests.helpers.rows import bulk_cases
from tests.helpers.web import api_token
from webapp.db import new_session, utcnow
from webapp.models import Case, Contact, Mailbox, Message, MessageMailbox
from webapp.services import case_lists, case_queries

CASES = 41
PER_PAGE = 6


def _with_ties(url: str) -> None:
    """41 cases, many with the same last activity, subject or contact (the id breaks ties)."""
    bulk_cases(url, CASES)
    same = utcnow() - timedelta(days=1)
    with new_session(url) as db:
        db.exec(update(Case).where(Case.id <= 20).values(updated_at=same))
        db.exec(update(Case).where(Case.id % 3 == 0).values(subject="Same subject"))
        db.exec(update(Case).where(Case.id % 4 == 0).values(contact_id=None))
        db.exec(update(Case).where(Case.id % 5 == 0).values(status="pending"))
        db.commit()


def _walk(url: str, **order) -> list[int]:
    """Every page, first to last, of the list in this order: the case ids as shown."""
    shown: list[int] = []
    with new_session(url) as db:
        pages = case_queries.list_cases(db, per_page=PER_PAGE, **order).pages
        for page in range(1, pages + 1):
            result = case_queries.list_cases(db, page, per_page=PER_PAGE, **order)
            shown += [row.case.id for row in result.rows]
    return shown


def _whole(url: str, **order) -> list[int]:
    with new_session(url) as db:
        return [row.case.id for row in case_queries.list_cases(db, per_page=1000, **order).rows]


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("sort", [None, *case_queries.SORTS])
def test_the_pages_hold_every_case_once_in_order(any_db, sort, descending):
    _with_ties(any_db)
    shown = _walk(any_db, sort=sort, descending=descending)
    assert sorted(shown) == list(range(1, CASES + 1))  # none repeated, none skipped
    assert shown == _whole(any_db, sort=sort, descending=descending)  # in the list's order


def test_the_last_page_holds_the_oldest_cases(any_db):
    _with_ties(any_db)
    with new_session(any_db) as db:
        last = case_queries.list_cases(db, page=7, per_page=PER_PAGE)
    assert [row.case.id for row in last.rows] == _whole(any_db)[36:]


def test_a_page_past_the_end_is_empty(any_db):
    _with_ties(any_db)
    with new_session(any_db) as db:
        assert case_queries.list_cases(db, page=8, per_page=PER_PAGE).rows == []


def test_the_api_pages_by_keyset_and_by_number_alike(any_db):
    _with_ties(any_db)
    with new_session(any_db) as db:
        by_after: list[int] = []
        after = 0
        while rows := case_lists.api_cases(db, after=after, per_page=PER_PAGE)[0]:
            by_after += [c.id for c, _, _ in rows]
            after = by_after[-1]
        by_page = [
            c.id
            for page in range(1, 8)
            for c, _, _ in case_lists.api_cases(db, page, per_page=PER_PAGE)[0]
        ]
    assert by_after == list(range(1, CASES + 1))
    assert by_page == by_after


def test_the_api_says_where_the_next_page_starts(admin, app_env):
    headers = {"Authorization": f"Bearer {api_token(admin)}"}
    bulk_cases(app_env["DATABASE_URL"], 60)
    first = admin.get("/api/v1/cases", headers=headers).get_json()
    second = admin.get(first["next"], headers=headers).get_json()
    assert [item["number"] for item in second["items"]] == list(range(51, 61))


def _two_mailboxes(url: str) -> tuple[int, int]:
    """41 cases: 1-20 filed from Support, 21-41 from Sales; the email of cases 25 and 30
    (twice for 30) and of Support's own case 5 came through Support too."""
    with new_session(url) as db:
        support, sales = (
            Mailbox(
                name=name, email_address=f"{name}@acme.example", email_key=f"{name}@acme.example"
            )
            for name in ("support", "sales")
        )
        db.add_all([support, sales])
        db.commit()
        ids = support.id, sales.id
    bulk_cases(url, CASES)
    with new_session(url) as db:
        db.exec(update(Case).where(Case.id <= 20).values(mailbox_id=ids[0]))
        db.exec(update(Case).where(Case.id > 20).values(mailbox_id=ids[1]))
        row = {"case_id": 30, "subject": "Again", "received_at": utcnow(), "message_id": "<2@x>"}
        db.exec(insert(Message.__table__).values(**_blank(), **row))
        db.commit()
        through = db.exec(select(Message.id).where(Message.case_id.in_([5, 25, 30]))).all()
        db.add_all(MessageMailbox(message_id=m, mailbox_id=ids[0]) for m in through)
        db.commit()
    return ids


SUPPORTS = [*range(1, 21), 25, 30]  # Support's cases: its own, and 25 and 30 through it


def test_a_mailbox_lists_the_cases_that_came_through_it_once_each(any_db):
    support, _ = _two_mailboxes(any_db)
    shown = _walk(any_db, filters=case_queries.CaseFilters(mailbox_id=support))
    assert sorted(shown) == SUPPORTS


def test_a_mailbox_counts_the_cases_that_came_through_it_once_each(any_db):
    support, _ = _two_mailboxes(any_db)
    with new_session(any_db) as db:
        page = case_queries.list_cases(db, filters=case_queries.CaseFilters(mailbox_id=support))
    assert page.total == len(SUPPORTS)


def test_a_mailbox_count_keeps_the_other_filters(any_db):
    support, _ = _two_mailboxes(any_db)
    filters = case_queries.CaseFilters(status="closed", mailbox_id=support)
    with new_session(any_db) as db:
        page = case_queries.list_cases(db, filters=filters)
    assert page.total == len([n for n in SUPPORTS if n % 3 == 0])  # 3, 6, … 18, and 30


def test_the_api_pages_through_a_mailbox_by_keyset_and_by_number(any_db):
    _, sales = _two_mailboxes(any_db)
    with new_session(any_db) as db:
        by_after: list[int] = []
        after = 0
        while rows := case_lists.api_cases(db, after=after, mailbox_id=sales, per_page=PER_PAGE)[0]:
            by_after += [c.id for c, _, _ in rows]
            after = by_after[-1]
        total = case_lists.api_cases(db, mailbox_id=sales, per_page=PER_PAGE)[1]
        by_page = [
            c.id
            for page in range(1, 5)
            for c, _, _ in case_lists.api_cases(db, page, mailbox_id=sales, per_page=PER_PAGE)[0]
        ]
    assert by_after == list(range(21, CASES + 1))
    assert by_page == by_after
    assert total == CASES - 20


def test_the_last_message_time_follows_messages_added_moved_and_deleted(any_db):
    bulk_cases(any_db, 20)
    later = utcnow() + timedelta(hours=1)
    table = Message.__table__
    with new_session(any_db) as db:
        first = _last_at(db, 1)
        row = {"case_id": 1, "subject": "Later", "received_at": later, "message_id": "<later@x>"}
        db.exec(insert(table).values(**_blank(), **row))
        db.commit()
        assert _last_at(db, 1) == later
        db.exec(update(table).where(table.c.message_id == "<later@x>").values(case_id=2))
        db.commit()
        assert _last_at(db, 2) == later
        assert _last_at(db, 1) == first  # its own message again
        db.exec(delete(table).where(table.c.message_id == "<later@x>"))
        db.commit()
        assert _last_at(db, 2) < later


def _blank() -> dict:
    fields = ("from_address", "from_name", "to_addresses", "cc_addresses", "text", "full_text")
    more = ("in_reply_to", "references_ids", "parse_notes")
    return {name: "" for name in fields + more} | {"direction": "in", "created_at": utcnow()}


def _last_at(db, case_id: int):
    query = select(case_lists.LAST_MESSAGE_AT).where(Case.id == case_id)
    return db.exec(query).one()


def _first_by_contact(url: str) -> tuple[int, str]:
    """The first case of the list sorted by contact: its id and the Contact it shows."""
    with new_session(url) as db:
        row = case_queries.list_cases(db, per_page=1, sort="contact").rows[0]
    return row.case.id, row.contact_name or row.contact_email or row.case.requester_email


def test_the_contact_order_follows_a_renamed_contact(any_db):
    bulk_cases(any_db, 20)  # Contact 0 and Contact 1, every other case each
    with new_session(any_db) as db:
        db.exec(update(Contact).where(Contact.name == "Contact 1").values(name="Aaron"))
        db.commit()
    assert _first_by_contact(any_db)[1] == "Aaron"


def test_the_contact_order_follows_a_case_given_no_contact(any_db):
    bulk_cases(any_db, 20)
    with new_session(any_db) as db:
        db.exec(update(Case).where(Case.id == 7).values(contact_id=None))
        db.commit()
    assert _first_by_contact(any_db) == (7, "c7@bulk.example")  # "c7@…" sorts before "contact"


def test_the_contact_order_follows_a_deleted_contact(any_db):
    bulk_cases(any_db, 20)
    with new_session(any_db) as db:
        db.exec(update(Case).where(Case.contact_id == 1).values(requester_email="Zulu <z@x>"))
        db.exec(update(Contact).where(Contact.id == 2).values(name="Zoe"))
        db.exec(delete(Contact).where(Contact.id == 1))
        db.commit()
    assert (
        _first_by_contact(any_db)[1] == "Zoe"
    )  # Contact 0's cases now sort as "zulu …", after Zoe


def test_a_new_case_is_sorted_by_its_contact_at_once(any_db):
    bulk_cases(any_db, 20)
    with new_session(any_db) as db:
        db.add(Case(number=99, subject="New", requester_email="aaa@x.example"))
        db.commit()
    assert _first_by_contact(any_db)[1] == "aaa@x.example"
