"""A long case shows its first message and the newest others; the rest is one link away."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import delete
from sqlmodel import select

from tests.helpers.rows import bulk_cases
from tests.helpers.web import csrf_from
from webapp.db import new_session
from webapp.models import CaseEvent, Message
from webapp.services import case_queries


def _messages(url: str, count: int) -> list[int]:
    """Case 1 with `count` messages ("Message 0" … "Message count-1"); their ids, in order."""
    bulk_cases(url, 10)
    with new_session(url) as db:
        db.exec(delete(Message).where(Message.case_id == 1))
        for n in range(count):
            db.add(Message(case_id=1, subject=f"Message {n}", text=f"Text of message {n}."))
        db.commit()
        return list(db.exec(select(Message.id).where(Message.case_id == 1).order_by(Message.id)))


def _shown(page: str) -> list[str]:
    return re.findall(r'<p class="subject">(Message \d+)', page)


@pytest.fixture
def long_case(app_env) -> list[int]:
    return _messages(app_env["DATABASE_URL"], case_queries.SHOWN_MESSAGES + 10)


def test_a_long_case_shows_its_first_message_and_the_newest(admin, long_case):
    page = admin.get("/cases/1").get_data(as_text=True)
    newest = [f"Message {n}" for n in range(11, 60)]
    assert _shown(page) == ["Message 0", *newest]


def test_a_long_case_says_how_many_earlier_messages_it_left_out(admin, long_case):
    page = admin.get("/cases/1").get_data(as_text=True)
    link = f'<a href="/cases/1?all=1#message-{long_case[1]}">Show the 10 earlier messages</a>'
    assert link in page
    assert page.index("Message 0") < page.index(link) < page.index("Message 11")


def test_the_link_shows_every_message_of_the_case(admin, long_case):
    page = admin.get("/cases/1?all=1").get_data(as_text=True)
    assert _shown(page) == [f"Message {n}" for n in range(60)]
    assert "earlier messages" not in page


def test_a_case_of_shown_messages_or_fewer_shows_them_all(admin, app_env):
    _messages(app_env["DATABASE_URL"], case_queries.SHOWN_MESSAGES)
    page = admin.get("/cases/1").get_data(as_text=True)
    assert len(_shown(page)) == case_queries.SHOWN_MESSAGES
    assert "earlier message" not in page


def test_the_history_links_a_left_out_message_to_the_whole_case(admin, app_env, long_case):
    with new_session(app_env["DATABASE_URL"]) as db:
        for message_id in (long_case[5], long_case[-1]):
            db.add(CaseEvent(case_id=1, action="reopened", actor="x@example.org",
                             via="incoming email", message_id=message_id))  # fmt: skip
        db.commit()
    page = admin.get("/cases/1").get_data(as_text=True)
    assert f'href="/cases/1?all=1#message-{long_case[5]}"' in page  # left out
    assert f'href="#message-{long_case[-1]}"' in page  # shown


def test_the_history_keeps_its_links_when_htmx_changes_the_status(admin, app_env, long_case):
    with new_session(app_env["DATABASE_URL"]) as db:
        db.add(CaseEvent(case_id=1, action="reopened", actor="x@example.org",
                         via="incoming email", message_id=long_case[5]))  # fmt: skip
        db.commit()
    token = csrf_from(admin.get("/cases/1").get_data(as_text=True))
    resp = admin.post(
        "/cases/1/status",
        data={"csrf_token": token, "status": "pending"},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 200
    assert f'href="/cases/1?all=1#message-{long_case[5]}"' in resp.get_data(as_text=True)
