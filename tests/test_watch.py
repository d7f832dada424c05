"""Push (issue 13): new mail becomes a case at once, announced by IMAP IDLE, on any number of
watchers; the scheduled poll stays as the safety net and starts within seconds of falling due."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from tests.helpers.mailboxes import make_mailbox, update_mailbox
from tests.helpers.messages import email
from tests.helpers.watch import (
    FAST,
    case_with_subject,
    lease,
    listening,
    rq_worker,
    wait_for,
    watcher_thread,
)
from webapp.db import new_session, utcnow
from webapp.models import WatchLease
from webapp.services.fetching import schedule


@pytest.fixture(autouse=True)
def fast_watchers(monkeypatch):
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)


def _due_box(env: dict, dovecot, user, **fields) -> int:
    return make_mailbox(env, dovecot, user, initial_fetch_done=True, **fields)


def _quiet_box(env: dict, dovecot, user, **fields) -> int:
    """A mailbox whose scheduled poll is a day away: only push can bring its mail in."""
    fields.setdefault("next_fetch_due_at", utcnow() + timedelta(days=1))
    fields.setdefault("last_fetch_at", utcnow())
    return _due_box(env, dovecot, user, **fields)


# -- the safety-net poll -------------------------------------------------------------


def _first_tick_enqueuing(env: dict, mailbox_id: int, first_tick, ticks: int = 10):
    """The first of the scheduler's ticks (every SCHEDULE_TICK_SECONDS) that finds it due."""
    step = timedelta(seconds=schedule.SCHEDULE_TICK_SECONDS)
    with new_session(env["DATABASE_URL"]) as db:
        for n in range(ticks):
            tick = first_tick + n * step
            if mailbox_id in schedule.due_mailbox_ids(db, now=tick):
                return tick
    return None


@pytest.mark.parametrize("offset", [0.1, 2.5, 4.9])
def test_a_poll_falling_due_between_two_ticks_starts_within_a_few_seconds(
    app_env, dovecot, mail_user, offset
):
    tick0 = utcnow() + timedelta(hours=1)
    due = tick0 + timedelta(seconds=offset)
    box = _due_box(app_env, dovecot, mail_user, next_fetch_due_at=due)
    tick = _first_tick_enqueuing(app_env, box, tick0)
    assert tick is not None
    assert tick - due <= timedelta(seconds=3)


def test_the_scheduler_ticks_every_five_seconds_at_most():
    assert schedule.SCHEDULE_TICK_SECONDS <= 5


def _watched(env: dict, mailbox_id: int, holder: str = "someone", expires_in: float = 60) -> None:
    with new_session(env["DATABASE_URL"]) as db:
        db.add(
            WatchLease(
                mailbox_id=mailbox_id,
                holder=holder,
                expires_at=utcnow() + timedelta(seconds=expires_in),
                watching_since=utcnow(),
                idle_supported=True,
            )
        )
        db.commit()


def test_a_watched_mailbox_is_polled_every_15_minutes_instead_of_every_minute(
    app_env, dovecot, mail_user
):
    now = utcnow()
    box = _due_box(
        app_env, dovecot, mail_user, next_fetch_due_at=now, last_fetch_at=now - timedelta(minutes=2)
    )
    _watched(app_env, box)
    with new_session(app_env["DATABASE_URL"]) as db:
        assert box not in schedule.due_mailbox_ids(db, now=now)
        assert box in schedule.due_mailbox_ids(db, now=now + timedelta(minutes=13, seconds=1))


def test_a_mailbox_whose_watcher_died_is_polled_at_its_own_interval_again(
    app_env, dovecot, mail_user
):
    now = utcnow()
    box = _due_box(
        app_env, dovecot, mail_user, next_fetch_due_at=now, last_fetch_at=now - timedelta(minutes=2)
    )
    _watched(app_env, box, expires_in=-1)
    with new_session(app_env["DATABASE_URL"]) as db:
        assert box in schedule.due_mailbox_ids(db, now=now)


# -- push ------------------------------------------------------------------------------


def test_mail_delivered_into_a_watched_mailbox_becomes_a_case_without_a_poll(
    app_env, dovecot, mail_user
):
    box = _quiet_box(app_env, dovecot, mail_user)
    with rq_worker(app_env), watcher_thread(app_env):
        wait_for(lambda: listening(app_env, box), what="the watcher listening")
        mail_user.deliver(email("Pushed at once", to=mail_user.email))
        case = wait_for(lambda: case_with_subject(app_env, "Pushed at once"))
        assert case.subject == "Pushed at once"
        # Watched: the scheduler leaves it alone for 15 minutes, however short its interval.
        update_mailbox(app_env, box, next_fetch_due_at=utcnow())
        with new_session(app_env["DATABASE_URL"]) as db:
            assert box not in schedule.due_mailbox_ids(db)


def test_a_disabled_mailbox_has_its_connection_closed(app_env, dovecot, mail_user):
    from tests.helpers.proxy import DowngradeProxy

    with DowngradeProxy(dovecot.host, dovecot.imaps_port, rewrite=None) as proxy:
        box = _quiet_box(app_env, dovecot, mail_user, port=proxy.port)
        with watcher_thread(app_env):
            wait_for(lambda: listening(app_env, box), what="the watcher listening")
            assert proxy.open_connections == 1
            update_mailbox(app_env, box, enabled=False)
            wait_for(lambda: proxy.open_connections == 0, what="the connection closed")
            assert lease(app_env, box) is None


def test_the_watcher_leaves_its_leases_when_it_stops(app_env, dovecot, mail_user):
    box = _quiet_box(app_env, dovecot, mail_user)
    with watcher_thread(app_env):
        wait_for(lambda: listening(app_env, box), what="the watcher listening")
    with new_session(app_env["DATABASE_URL"]) as db:
        assert db.exec(select(WatchLease)).all() == []
