"""Push (issue 13): new mail becomes a case at once, announced by IMAP IDLE, on any number of
watchers; the scheduled poll stays as the safety net and starts within seconds of falling due."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from tests.helpers.mailboxes import make_mailbox, update_mailbox
from tests.helpers.messages import email
from tests.helpers.oauth import authorized_box
from tests.helpers.processes import rq_worker
from tests.helpers.proxy import DowngradeProxy, strip_idle_and_encryption
from tests.helpers.rows import mailbox
from tests.helpers.watch import (
    FAST,
    case_with_subject,
    lease,
    listening,
    reconnects,
    wait_for,
    watcher_thread,
)
from tests.helpers.web import api_token, get_csrf
from webapp.db import new_session, utcnow
from webapp.models import Mailbox, WatchLease
from webapp.services.fetching import schedule
from webapp.services.push import targets as push_targets


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


def test_the_mailbox_page_and_the_api_say_push_is_listening(app_env, admin, dovecot, mail_user):
    box = _quiet_box(app_env, dovecot, mail_user)
    token = api_token(admin)
    with watcher_thread(app_env):
        wait_for(lambda: listening(app_env, box), what="the watcher listening")
        page = admin.get(f"/mailboxes/{box}").get_data(as_text=True)
        item = admin.get("/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"})
    assert "Push: listening since" in page
    assert "Last event: Connected to INBOX" in page
    assert "Reconnects in the last hour: 0" in page
    push = item.get_json()["items"][0]["push"]
    assert push["state"] == "listening"
    assert push["since"] is not None
    assert push["reconnects_last_hour"] == 0


def test_an_edit_reaches_the_watcher_within_seconds(app_env, dovecot, mail_user):
    with DowngradeProxy(dovecot.host, dovecot.imaps_port, rewrite=None) as proxy:
        box = _quiet_box(app_env, dovecot, mail_user)
        with watcher_thread(app_env):
            wait_for(lambda: listening(app_env, box), what="the watcher listening")
            update_mailbox(app_env, box, port=proxy.port)  # e.g. the admin changed the port
            wait_for(lambda: proxy.open_connections == 1, what="a connection through the new port")


def test_a_dovecot_restart_leads_to_a_reconnect_and_the_mail_that_came_meanwhile(app_env, test_ca):
    from tests.servers.dovecot import DovecotServer

    server = DovecotServer(cert_pem=test_ca.cert_pem, key_pem=test_ca.key_pem).start()
    try:
        user = server.new_user()
        box = _quiet_box(app_env, server, user)
        with rq_worker(app_env), watcher_thread(app_env):
            wait_for(lambda: listening(app_env, box), what="the watcher listening")
            server.stop(remove_files=False)
            wait_for(lambda: not listening(app_env, box), what="the watcher noticing")
            user.deliver(email("While the server was down", to=user.email))
            server.start()
            case = wait_for(
                lambda: case_with_subject(app_env, "While the server was down"), timeout=60
            )
            assert reconnects(app_env, box) >= 1
        assert case.subject == "While the server was down"
    finally:
        server.stop()


def test_a_cut_connection_is_reconnected_with_backoff(app_env, dovecot, mail_user):
    with DowngradeProxy(dovecot.host, dovecot.imaps_port, rewrite=None) as proxy:
        box = _quiet_box(app_env, dovecot, mail_user, port=proxy.port)
        with watcher_thread(app_env):
            wait_for(lambda: listening(app_env, box), what="the watcher listening")
            proxy.refusing = True
            proxy.cut()
            wait_for(lambda: reconnects(app_env, box) >= 2, what="retries while refused")
            proxy.refusing = False
            wait_for(lambda: listening(app_env, box), what="listening again")


def test_a_server_without_idle_is_polled_and_the_page_says_why(app_env, admin, dovecot, mail_user):
    with DowngradeProxy(
        dovecot.host, dovecot.imap_port, rewrite=strip_idle_and_encryption
    ) as proxy:
        box = _quiet_box(
            app_env,
            dovecot,
            mail_user,
            protocol="imap",
            port=proxy.port,
            allow_plaintext_login=True,
        )
        with watcher_thread(app_env):
            wait_for(
                lambda: (row := lease(app_env, box)) is not None and row.idle_supported is False,
                what="the watcher finding no IDLE",
            )
            page = admin.get(f"/mailboxes/{box}").get_data(as_text=True)
            assert "Polling every 1 min (this server does not offer IDLE)" in page
            # Not watched: the scheduler polls it at its own interval.
            update_mailbox(app_env, box, next_fetch_due_at=utcnow())
            with new_session(app_env["DATABASE_URL"]) as db:
                assert box in schedule.due_mailbox_ids(db)
            # the proxy sees the watcher's close from its own thread, a moment later
            wait_for(lambda: proxy.open_connections == 0, what="the probe connection closed")


def test_an_expiring_token_is_refreshed_and_the_watcher_reconnects_with_xoauth2(
    app_env, admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client, monkeypatch
):
    oauth_server.expires_in = 12  # seconds; the watcher renews 6 s before the end
    monkeypatch.setenv("MAILCHANNEL_WATCH_TOKEN_MARGIN", "6")
    box = authorized_box(admin, app, oauth_server, oauth_dovecot, oauth_mail_user, oauth_client)
    with rq_worker(app_env):
        # Save and the OAuth callback each queued a check: Continue is refused while the
        # second one runs, so press it until it is taken (as the admin would, once it is done).
        def continued() -> bool:
            if mailbox(app_env, box).verify_state != "ok":
                return False
            csrf = get_csrf(admin, "/mailboxes/")
            admin.post(f"/mailboxes/{box}/continue", data={"csrf_token": csrf})
            return mailbox(app_env, box).setup_complete

        wait_for(continued, what="Continue taken after the checks")
        wait_for(lambda: mailbox(app_env, box).initial_fetch_done, what="the first fetch")
        with watcher_thread(app_env):
            wait_for(lambda: listening(app_env, box), what="the watcher listening")
            refreshed = oauth_server.refresh_count
            wait_for(lambda: reconnects(app_env, box) >= 1, what="a reconnect before expiry")
            wait_for(lambda: listening(app_env, box), what="listening again")
            assert oauth_server.refresh_count > refreshed
            oauth_mail_user.deliver(email("After the new token", to=oauth_mail_user.email))
            case = wait_for(lambda: case_with_subject(app_env, "After the new token"))
            assert case.subject == "After the new token"
            # Consent revoked: the next renewal is refused, and the mailbox stops being watched.
            oauth_server.revoke_all_for(oauth_mail_user.email)
            wait_for(lambda: lease(app_env, box) is None, what="the watcher letting go")
    assert mailbox(app_env, box).reauth_needed is True
    page = admin.get(f"/mailboxes/{box}").get_data(as_text=True)
    assert "Push stopped: re-authorization needed" in page


def test_idle_is_renewed_on_time_without_counting_as_a_reconnect(
    app_env, dovecot, mail_user, monkeypatch
):
    monkeypatch.setenv("MAILCHANNEL_WATCH_IDLE_RESTART", "0.5")  # 25 minutes in production
    # Plain IMAP through the proxy, so that the test can read what the watcher sends.
    with DowngradeProxy(dovecot.host, dovecot.imap_port) as proxy:
        box = _quiet_box(
            app_env,
            dovecot,
            mail_user,
            protocol="imap",
            port=proxy.port,
            allow_plaintext_login=True,
        )
        with rq_worker(app_env), watcher_thread(app_env):
            wait_for(lambda: listening(app_env, box), what="the watcher listening")
            wait_for(lambda: proxy.client_bytes.count(b"NOOP") >= 3, what="IDLE renewed")
            mail_user.deliver(email("Between two renewals", to=mail_user.email))
            case = wait_for(lambda: case_with_subject(app_env, "Between two renewals"))
            assert case.subject == "Between two renewals"
            assert reconnects(app_env, box) == 0
            assert proxy.client_bytes.count(b"IDLE") >= 3


def test_watch_leases_are_taken_once_and_taken_over_after_expiry(any_db, monkeypatch):
    from webapp.services.push import leases as watch_leases

    monkeypatch.setenv("MAILCHANNEL_WATCH_LEASE_TTL", "60")
    with new_session(any_db) as db:
        box = Mailbox(name="Push", email_address="p@example.com", email_key="p@example.com")
        db.add(box)
        db.commit()
        assert watch_leases.acquire(db, box.id, "first")
        assert not watch_leases.acquire(db, box.id, "second")
        assert watch_leases.renew_all(db, "first") == {box.id}
        monkeypatch.setenv("MAILCHANNEL_WATCH_LEASE_TTL", "-1")  # the first watcher went silent
        watch_leases.renew_all(db, "first")
        monkeypatch.setenv("MAILCHANNEL_WATCH_LEASE_TTL", "60")
        assert watch_leases.acquire(db, box.id, "second")
        assert watch_leases.renew_all(db, "first") == set()


def test_two_live_watchers_each_take_half_rounded_up(any_db):
    from webapp.services.push import leases as watch_leases

    with new_session(any_db) as db:
        watch_leases.heartbeat(db, "one")
        watch_leases.heartbeat(db, "two")
        live = watch_leases.live_watchers(db)
    assert live == 2
    assert watch_leases.fair_share(5, live) == 3


def test_each_chosen_folder_has_its_own_idle_connection(app_env, dovecot, mail_user):
    mail_user.deliver(email("Seed", to=mail_user.email), folder="Support")  # the folder exists
    with DowngradeProxy(dovecot.host, dovecot.imaps_port, rewrite=None) as proxy:
        box = _quiet_box(app_env, dovecot, mail_user, port=proxy.port, folders="INBOX\nSupport")
        with watcher_thread(app_env):
            wait_for(lambda: listening(app_env, box), what="both folders listening")
            assert proxy.open_connections == 2  # no worker runs yet: these are the IDLE ones
            with rq_worker(app_env):
                mail_user.deliver(email("Into Support", to=mail_user.email), folder="Support")
                case = wait_for(lambda: case_with_subject(app_env, "Into Support"))
            assert case.subject == "Into Support"
            assert lease(app_env, box).last_event == "New mail in Support"


def _sessions(*watchers) -> int:
    return sum(len(b.sessions) for w in watchers for b in list(w.boxes.values()))


def test_two_watchers_keep_one_account_under_its_connection_limit(
    app_env, dovecot, mail_user, monkeypatch
):
    monkeypatch.setattr(push_targets, "DEFAULT_ACCOUNT_LIMIT", 5)  # 5 - 2 reserved: 3 IDLE
    mail_user.deliver(email("Seed", to=mail_user.email), folder="Support")  # the folder exists
    with DowngradeProxy(dovecot.host, dovecot.imaps_port, rewrite=None) as proxy:
        boxes = [  # one account (host and username), two mailboxes of two folders each
            _quiet_box(app_env, dovecot, mail_user, port=proxy.port, folders="INBOX\nSupport",
                       email_address=f"desk{i}@example.com", email_key=f"desk{i}@example.com")
            for i in range(2)
        ]  # fmt: skip
        with watcher_thread(app_env) as one, watcher_thread(app_env) as two:
            wait_for(
                lambda: len(one.boxes) == 1 and len(two.boxes) == 1,
                what="each watcher holding one mailbox",
            )
            wait_for(
                lambda: proxy.open_connections == _sessions(one, two),
                what="the connections settled",
            )
            assert _sessions(one, two) == 3
            assert proxy.open_connections == 3
            rows = [lease(app_env, box) for box in boxes]
            limited = [row for row in rows if row.error]
            assert len(limited) == 1
            assert "1 of 2 folders are polled instead" in limited[0].error
            assert limited[0].watching_since is None  # so it is polled at its own interval
