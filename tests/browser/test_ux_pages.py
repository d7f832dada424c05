"""Every main page in a real browser: the template preview while typing, no sideways scroll on a
390 px phone, the reply box off when the mailbox cannot send, and the same pages without
JavaScript. With MAILCHANNEL_SCREENS=DIR, screenshots of each page at 1366x900 and 390x844."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import (
    assert_clean,
    create_first_admin,
    fetch_into_cases,
)
from tests.helpers.messages import email
from tests.helpers.web import ADMIN_EMAIL, ADMIN_PASSWORD

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
NOT_SET_UP = "This mailbox cannot send yet: set up its Outgoing mail."
WITHOUT_FORMS = {"templates", "tasks", "audit"}  # lists with nothing to fill in (when empty)


def _desk(page, live_server, live_stack, dovecot, mail_user) -> tuple[int, str]:
    """The first admin, a mailbox without Outgoing mail and one case in it: (mailbox, case URL)."""
    create_first_admin(page, live_server)
    mail_user.deliver(email("Printer jammed", sender="ada@example.org", to=mail_user.email))
    box = fetch_into_cases(
        page, live_server, live_stack.env, dovecot, mail_user, ["Printer jammed"]
    )
    return box, page.get_by_role("link", name="Printer jammed").get_attribute("href")


def _main_pages(box: int, case_url: str) -> dict[str, str]:
    return {
        "cases": "/cases/", "case": case_url, "mailboxes": "/mailboxes/",
        "mailbox": f"/mailboxes/{box}", "mailbox-form": f"/mailboxes/{box}/edit",
        "templates": "/templates/", "template": "/templates/1", "outbox": "/outbox/",
        "held": "/held", "contacts": "/contacts/", "tasks": "/tasks", "users": "/users/",
        "audit": "/audit/", "account": "/account/",
    }  # fmt: skip


def _screens() -> Path | None:
    folder = os.environ.get("MAILCHANNEL_SCREENS")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


@pytest.mark.browser
def test_the_template_preview_follows_typing(page, live_server, page_problems):
    page_problems.watch(page)
    create_first_admin(page, live_server)
    page.goto(f"{live_server}/templates/1")
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")
    preview = page.locator("#preview")
    body = page.get_by_label("Body", exact=True)
    body.press("End")
    body.press_sequentially(" Typed just now.")
    expect(preview).to_contain_text("Typed just now.")
    body.press_sequentially(" And more.")
    expect(preview).to_contain_text("Typed just now. And more.")
    assert_clean(page_problems)


@pytest.mark.browser
def test_no_page_scrolls_sideways_on_a_phone(
    page, live_server, live_stack, dovecot, mail_user, page_problems
):
    page_problems.watch(page)
    box, case_url = _desk(page, live_server, live_stack, dovecot, mail_user)
    screens = _screens()
    wide = []
    for size_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        for name, path in _main_pages(box, case_url).items():
            page.goto(live_server + path)
            expect(page.locator("h1").first).to_be_visible()
            if screens:
                page.screenshot(path=str(screens / f"{name}-{size_name}.png"), full_page=True)
            if size is PHONE and page.evaluate(
                "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"
            ):
                wide.append(name)
    assert wide == []
    assert_clean(page_problems)


@pytest.mark.browser
def test_the_reply_box_is_off_without_outgoing_mail(
    page, live_server, live_stack, dovecot, mail_user
):
    box, case_url = _desk(page, live_server, live_stack, dovecot, mail_user)
    page.goto(live_server + case_url)
    expect(page.get_by_text(NOT_SET_UP)).to_be_visible()
    expect(page.locator("#comment")).to_be_disabled()
    page.get_by_role("link", name=re.compile("Set up the Outgoing mail")).click()
    expect(page).to_have_url(re.compile(rf"/mailboxes/{box}/edit#outgoing-mail$"))


@pytest.mark.browser
def test_without_javascript_every_main_page_loads_with_its_forms(
    page, nojs_page, live_server, live_stack, dovecot, mail_user
):
    box, case_url = _desk(page, live_server, live_stack, dovecot, mail_user)
    nojs_page.goto(live_server + "/auth/login")
    nojs_page.get_by_label("Email", exact=True).fill(ADMIN_EMAIL)
    nojs_page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
    nojs_page.get_by_role("button", name="Log in").click()
    expect(nojs_page.locator(".who")).to_have_text(ADMIN_EMAIL)
    missing = []
    for name, path in _main_pages(box, case_url).items():
        resp = nojs_page.goto(live_server + path)
        if resp.status != 200 or not nojs_page.locator("h1").first.is_visible():
            missing.append(name)
        elif name not in WITHOUT_FORMS and not nojs_page.locator("main form").first.is_visible():
            missing.append(name)
    assert missing == []
