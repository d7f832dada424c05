"""The mailbox page: fetch status, Fetch now, fetch log, failed messages with Reprocess, stale badge."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.helpers.mailboxes import make_mailbox, update_mailbox
from tests.helpers.messages import email
from tests.helpers.rows import raws
from tests.helpers.web import csrf_from
from webapp.db import new_session, utcnow
from webapp.mail.parse import DEFAULT_LIMITS, ParseLimits
from webapp.models import FetchLease, FetchRun
from webapp.services.ingest import parse_ahead


def _fact(page: str, name: str) -> str:
    match = re.search(rf"<dt>{name}</dt><dd[^>]*>(.*?)</dd>", page, re.S)
    assert match, name
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def _post(admin, url: str, page_url: str, **headers):
    token = csrf_from(admin.get(page_url).get_data(as_text=True))
    return admin.post(url, data={"csrf_token": token}, headers=headers)


def test_counts_log_and_a_failed_message_that_reprocess_fixes(
    admin, app_env, dovecot, mail_user, run_worker, monkeypatch
):
    mail_user.deliver(email("A normal question"))
    mail_user.deliver(email("Huge header", extra="X-Filler: " + "h" * 3000))
    box = make_mailbox(app_env, dovecot, mail_user)
    url = f"/mailboxes/{box}"
    # a small header limit for the fetch (the worker runs in this process)
    monkeypatch.setattr(parse_ahead, "DEFAULT_LIMITS", ParseLimits(max_header_bytes=2000))
    assert _post(admin, f"{url}/fetch", url).status_code == 302
    run_worker()

    page = admin.get(url).get_data(as_text=True)
    assert _fact(page, "Messages fetched") == "2"
    assert _fact(page, "Failed") == "1"
    assert _fact(page, "Last fetch").endswith(", ok")
    assert re.search(r"<dt>Last fetch</dt><dd[^>]*><time datetime=[^>]*UTC", page)
    assert re.search(r"<dt>Next fetch</dt><dd[^>]*><time datetime=[^>]*UTC", page)
    run = re.search(r'<tr id="run-\d+">(.*?)</tr>', page, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", run, re.S)]
    assert "(first fetch)" in cells[0]
    assert 'title="20' in run  # the exact time on hover
    assert cells[1].endswith("UTC")
    assert cells[2] == "ok"
    assert cells[3] == "2"
    assert cells[4] == "1"
    assert "Huge header" in cells[5]
    failed = re.search(r'<tr id="raw-(\d+)">(.*?)</tr>', page, re.S)
    raw_id, row = failed.group(1), failed.group(2)
    assert "Huge header" in row
    assert "header block" in row
    assert "Reprocess" in row
    assert admin.get("/cases/").get_data(as_text=True).count('<tr id="case-') == 1

    # without its CSRF token Reprocess is refused
    assert admin.post(f"{url}/messages/{raw_id}/reprocess").status_code == 400
    monkeypatch.setattr(parse_ahead, "DEFAULT_LIMITS", DEFAULT_LIMITS)
    resp = _post(admin, f"{url}/messages/{raw_id}/reprocess", url)
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith(url)
    page = admin.get(url).get_data(as_text=True)
    assert "it is on a case now" in page
    assert _fact(page, "Failed") == "0"
    assert f'id="raw-{raw_id}"' not in page
    assert admin.get("/cases/").get_data(as_text=True).count('<tr id="case-') == 2
    # a raw message of another mailbox is not found through this one
    assert _post(admin, f"/mailboxes/{box + 1}/messages/{raw_id}/reprocess", url).status_code == 404


def test_reprocess_of_a_too_large_message_asks_the_next_fetch(
    admin, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(email("Big one", body="b" * 20_000 + "\n"))
    box = make_mailbox(app_env, dovecot, mail_user, max_message_bytes=10_000)
    url = f"/mailboxes/{box}"
    _post(admin, f"{url}/fetch", url)
    run_worker()
    raw = raws(app_env, box)[0]
    assert raw.state == "too_large"
    page = admin.get(url).get_data(as_text=True)
    assert "too large" in page
    assert _fact(page, "Failed") == "1"
    # with HTMX the answer is the page's fetching block, with the outcome in it
    resp = _post(admin, f"{url}/messages/{raw.id}/reprocess", url, **{"HX-Request": "true"})
    fragment = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert fragment.lstrip().startswith('<section id="fetching"')
    assert "the next fetch downloads it" in fragment
    assert "waiting for the next fetch" in fragment
    assert f"{url}/messages/{raw.id}/reprocess" not in fragment  # no Reprocess while it waits
    update_mailbox(app_env, box, max_message_bytes=1_000_000)
    _post(admin, f"{url}/fetch", url)
    run_worker()
    assert raws(app_env, box)[0].state == "done"
    assert _fact(admin.get(url).get_data(as_text=True), "Failed") == "0"


def test_fetch_now_shows_the_queued_fetch_and_polls_until_it_is_done(
    admin, app_env, dovecot, mail_user, run_worker
):
    mail_user.deliver(email("Polled"))
    box = make_mailbox(app_env, dovecot, mail_user)
    url = f"/mailboxes/{box}"
    page = admin.get(url).get_data(as_text=True)
    form = re.search(r'<form method="post" action="/mailboxes/\d+/fetch"[^>]*>', page).group(0)
    assert f'hx-post="{url}/fetch"' in form
    assert 'hx-select="#fetching"' in form
    assert "every 2s" not in page
    assert "No fetch has run yet" in page
    assert admin.post(f"{url}/fetch").status_code == 400  # CSRF

    # HTMX: the redirect is followed and the page's fetching block replaces the old one
    resp = _post(admin, f"{url}/fetch", url, **{"HX-Request": "true"})
    assert resp.status_code == 302
    page = admin.get(url).get_data(as_text=True)
    assert "A fetch is queued" in page
    assert 'hx-trigger="every 2s"' in page
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page
    assert f'<a href="{url}">Refresh</a>' in page
    fragment = admin.get(f"{url}/fetch-status", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert fragment.lstrip().startswith('<section id="fetching"')
    assert "<html" not in fragment
    assert f'hx-get="{url}/fetch-status"' in fragment
    assert 'hx-trigger="every 2s"' in fragment

    run_worker()
    fragment = admin.get(f"{url}/fetch-status").get_data(as_text=True)
    assert "every 2s" not in fragment
    assert "A fetch is queued" not in fragment
    assert _fact(fragment, "Messages fetched") == "1"
    assert "noscript" not in admin.get(url).get_data(as_text=True)


def test_the_first_fetch_of_a_large_mailbox_shows_its_progress(admin, app_env, dovecot, mail_user):
    box = make_mailbox(app_env, dovecot, mail_user)
    with new_session(app_env["DATABASE_URL"]) as db:
        db.add(
            FetchLease(
                mailbox_id=box, holder="worker-1", expires_at=utcnow() + timedelta(minutes=5)
            )
        )
        db.add(
            FetchRun(mailbox_id=box, holder="worker-1", first_run=True, total=12_000, done=4_500)
        )
        db.commit()
    page = admin.get(f"/mailboxes/{box}").get_data(as_text=True)
    assert "4500 of 12000" in page
    assert '<progress max="12000" value="4500">' in page
    assert 'hx-trigger="every 2s"' in page
    assert "noscript" in page
    assert ">running</span>" in page
    assert "(4500 of 12000)" in page


def test_the_last_error_says_what_to_do(admin, app_env, dovecot, mail_user):
    box = make_mailbox(
        app_env,
        dovecot,
        mail_user,
        last_fetch_at=utcnow(),
        last_fetch_error="The server rejected the login.",
        last_fetch_error_advice="Check the password on the mailbox form.",
    )
    page = admin.get(f"/mailboxes/{box}").get_data(as_text=True)
    assert "The last fetch failed:</strong> The server rejected the login." in page
    assert "What to do: Check the password on the mailbox form." in page
    assert _fact(page, "Last fetch").endswith("failed")


def test_the_stale_badge_after_three_missed_intervals(admin, app_env, dovecot, mail_user):
    long_ago = utcnow() - timedelta(minutes=10)
    stale = make_mailbox(
        app_env,
        dovecot,
        mail_user,
        fetch_interval_seconds=60,
        fetching_since=long_ago,
        last_fetch_ok_at=utcnow() - timedelta(seconds=181),
    )
    fresh_user = dovecot.new_user()
    fresh = make_mailbox(
        app_env,
        dovecot,
        fresh_user,
        fetch_interval_seconds=60,
        fetching_since=long_ago,
        last_fetch_ok_at=utcnow() - timedelta(seconds=150),
    )
    listing = admin.get("/mailboxes/").get_data(as_text=True)
    rows = dict(re.findall(r'<tr id="mailbox-(\d+)">(.*?)</tr>', listing, re.S))
    assert "not fetching" in rows[str(stale)]
    assert "not fetching" not in rows[str(fresh)]
    page = admin.get(f"/mailboxes/{stale}").get_data(as_text=True)
    assert "not fetching" in page
    assert "No successful fetch for more than 3 fetch intervals" in page
    assert "not fetching" not in admin.get(f"/mailboxes/{fresh}").get_data(as_text=True)
    # a disabled mailbox is not "stale": it is not meant to fetch
    update_mailbox(app_env, stale, enabled=False)
    assert "not fetching" not in admin.get(f"/mailboxes/{stale}").get_data(as_text=True)
