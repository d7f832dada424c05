"""Authentication-Results counts only from the top, where our receiving server puts it
(RFC 8601 section 5): a forged copy lower in the header block never verifies a sender."""

from __future__ import annotations

from tests.helpers.mailboxes import desk, fetch
from tests.helpers.messages import AUTHSERV, email
from tests.helpers.rows import held_of, raw_by_subject
from webapp.mail.authresults import check_sender, trusted_results
from webapp.mail.parse import parse_message

FORGED = f"Authentication-Results: {AUTHSERV}; dkim=pass header.d=example.org; dmarc=pass header.from=example.org"
THEIR_BLOCK = (
    "DKIM-Signature: v=1; a=rsa-sha256; d=attacker.example; s=s1; b=abc\r\n"
    "From: Ada <ada@example.org>\r\n"
    "To: support@example.com\r\n"
    "Subject: Invoice\r\n"
    "Message-ID: <f1@attacker.example>\r\n"
)


def _message(our_block: str, their_block: str = THEIR_BLOCK) -> bytes:
    """Our server's trace block on top of what the sender wrote."""
    return (our_block + their_block + "\r\nbody\r\n").encode()


def _ours(results: str) -> str:
    """What Gmail-like servers add: Received, then their Authentication-Results below it."""
    return (
        "Received: by 2002:a05:7300::1 with SMTP id x1; Mon, 7 Dec 2026 10:00:00 +0000\r\n"
        "Received: from mail.attacker.example (mail.attacker.example [192.0.2.9])\r\n"
        f" by {AUTHSERV} with ESMTPS id y2; Mon, 7 Dec 2026 10:00:00 +0000\r\n"
        "Received-SPF: fail (domain of example.org does not designate 192.0.2.9)\r\n"
        f"Authentication-Results: {AUTHSERV}; {results}\r\n"
    )


def _check(raw: bytes):
    parsed = parse_message(raw)
    return check_sender(parsed.auth_results_runs, AUTHSERV, parsed.from_addr)


def test_a_forged_pass_below_the_sender_headers_is_ignored():
    raw = _message(
        _ours("spf=fail smtp.mailfrom=example.org; dkim=none"), THEIR_BLOCK + FORGED + "\r\n"
    )
    check = _check(raw)
    assert check.verified is False
    assert "spf=fail" in check.reason


def test_a_forged_pass_does_not_count_when_our_server_found_nothing():
    raw = _message(_ours("none"), THEIR_BLOCK + FORGED + "\r\n")
    assert _check(raw).verified is False


def test_a_forged_pass_at_the_top_of_the_senders_headers_is_ignored():
    raw = _message(_ours("spf=fail smtp.mailfrom=example.org"), FORGED + "\r\n" + THEIR_BLOCK)
    assert _check(raw).verified is False  # a Received-less run below ours: not the top one


def test_our_own_pass_at_the_top_counts():
    raw = _message(_ours("dkim=pass header.d=example.org"))
    check = _check(raw)
    assert check.verified is True
    assert check.method == "dkim"


def test_a_second_header_of_ours_right_below_does_not_count():
    stacked = _ours("spf=fail smtp.mailfrom=example.org") + FORGED + "\r\n"
    assert _check(_message(stacked)).verified is False


def test_a_forwarders_header_above_ours_does_not_hide_ours():
    forwarded = "Authentication-Results: relay.other.example; dkim=fail\r\n" + _ours(
        "dkim=pass header.d=example.org"
    )
    assert _check(_message(forwarded)).verified is True


def test_only_the_topmost_header_of_ours_is_trusted():
    runs = [
        f"relay.example; none\n{AUTHSERV}; spf=fail\n{AUTHSERV}; dkim=pass",
        f"{AUTHSERV}; dmarc=pass",
    ]
    trusted = trusted_results(runs, AUTHSERV)
    assert [r.method for h in trusted for r in h.results] == ["spf"]


def test_a_forged_lower_header_sends_no_confirmation(app, app_env, dovecot, mail_user, smtp_server):
    box = desk(app_env, dovecot, mail_user, smtp_server, confirm_unknown_senders=True,
               authserv_id=AUTHSERV)  # fmt: skip
    ours = f"Authentication-Results: {AUTHSERV}; spf=fail smtp.mailfrom=example.org\r\n"
    mail_user.deliver(ours.encode() + email("Forged pass", sender="ada@example.org", extra=FORGED))
    assert fetch(app_env, box)["state"] == "ok"
    held = held_of(app_env, raw_by_subject(app_env, "Forged pass").id)
    assert held.mail_decision.startswith("held silently: SPF/DKIM did not pass")
