"""A failing mailbox waits longer after each failure in a row, up to 30 minutes."""

from __future__ import annotations

import socket
from datetime import timedelta

from tests.helpers.mailboxes import fetch, make_mailbox, update_mailbox
from tests.helpers.rows import mailbox
from webapp.services.fetching.run import backoff


def _wait(env: dict, box: int) -> timedelta:
    row = mailbox(env, box)
    return row.next_fetch_due_at - row.last_fetch_at


def test_the_wait_doubles_from_the_interval():
    assert timedelta(seconds=54) <= backoff(60, 1) <= timedelta(seconds=60)
    assert timedelta(seconds=216) <= backoff(60, 3) <= timedelta(seconds=240)


def test_the_wait_stops_at_thirty_minutes():
    assert timedelta(minutes=27) <= backoff(60, 12) <= timedelta(minutes=30)
    assert backoff(300, 1000) <= timedelta(minutes=30)


def test_an_interval_longer_than_thirty_minutes_is_kept():
    assert timedelta(minutes=54) <= backoff(3600, 4) <= timedelta(minutes=60)


def test_a_mailbox_whose_server_refuses_backs_off_up_to_thirty_minutes(app_env, dovecot, mail_user):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    box = make_mailbox(app_env, dovecot, mail_user, initial_fetch_done=True)
    update_mailbox(app_env, box, port=port, fetch_interval_seconds=300)
    waits = []
    for _ in range(4):
        fetch(app_env, box)
        waits.append(_wait(app_env, box))
    assert mailbox(app_env, box).last_fetch_error_kind == "connection_refused"
    assert mailbox(app_env, box).fetch_failures == 4
    assert waits[1] > waits[0]
    assert waits[2] > waits[1]
    assert timedelta(minutes=27) <= waits[3] <= timedelta(minutes=30)  # 300 s * 8, capped
