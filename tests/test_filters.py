"""Pure decisions: sender filter, Authentication-Results, ceilings, acks, challenges, tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer

from webapp.mail.authresults import (
    aligned,
    check_sender,
    parse_authentication_results,
    sender_verified,
)
from webapp.services.filters import (
    RateCeiling,
    intake_action,
    over_ceiling,
    sender_decision,
    should_auto_ack,
    should_challenge,
)
from webapp.services.outgoing.confirm import (
    ConfirmationExpired,
    ConfirmationInvalid,
    make_token,
    read_token,
)
from webapp.services.validation import parse_sender_filter

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MX = "mx.desk.example"


# -- Sender Email Address Filter ---------------------------------------------------------


def test_no_rules_everyone_unknown_unless_known_contact() -> None:
    assert sender_decision([], "ada@example.org") == "unknown"
    assert sender_decision([], "ada@example.org", known_contact=True) == "allow"


def test_block_rules_only() -> None:
    rules = parse_sender_filter("block: spam.example\nblock: *.bulk.example")
    assert sender_decision(rules, "x@spam.example") == "block"
    assert sender_decision(rules, "x@news.bulk.example") == "block"
    assert sender_decision(rules, "x@bulk.example") == "unknown"  # *.domain: subdomains only
    assert sender_decision(rules, "ada@example.org") == "unknown"
    assert sender_decision(rules, "x@spam.example", known_contact=True) == "block"


def test_allow_rules_make_everyone_else_unknown() -> None:
    rules = parse_sender_filter("allow: *@customer.example\nallow: Boss@Partner.example")
    assert sender_decision(rules, "ada@customer.example") == "allow"
    assert sender_decision(rules, "boss@partner.example") == "allow"  # case-insensitive
    assert sender_decision(rules, " BOSS@partner.example ") == "allow"
    assert sender_decision(rules, "other@partner.example") == "unknown"
    assert sender_decision(rules, "ada@sub.customer.example") == "unknown"
    assert sender_decision(rules, "ada@example.org", known_contact=True) == "allow"


def test_block_wins_over_allow() -> None:
    rules = parse_sender_filter("allow: customer.example\nblock: intern@customer.example")
    assert sender_decision(rules, "intern@customer.example") == "block"
    assert sender_decision(rules, "ada@customer.example") == "allow"
    rules = parse_sender_filter("block: *@customer.example\nallow: ada@customer.example")
    assert sender_decision(rules, "ada@customer.example") == "block"


def test_empty_address_is_unknown() -> None:
    assert sender_decision(parse_sender_filter("allow: *@x.example"), "") == "unknown"


def test_intake_action() -> None:
    assert intake_action("block", confirmation_on=True) == "filter"
    assert intake_action("block", confirmation_on=False) == "filter"
    assert intake_action("unknown", confirmation_on=True) == "hold"
    assert intake_action("unknown", confirmation_on=False) == "accept"
    assert intake_action("allow", confirmation_on=True) == "accept"


# -- Authentication-Results --------------------------------------------------------------


def test_parse_comments_quotes_versions_and_folding() -> None:
    value = (
        f'{MX} 1; spf=pass (sender IP is 192.0.2.1; good) smtp.mailfrom="bounce@mail.example.org"'
        "\r\n\tsmtp.helo=out.example.org;\r\n dkim = pass (2048-bit key) header.d=example.org"
        ' header.i=@example.org header.b="AbC;d";\n'
        "other.example; none"
    )
    first, second = parse_authentication_results(value)
    assert first.authserv_id == MX
    spf, dkim = first.results
    assert spf.method == "spf"
    assert spf.result == "pass"
    assert spf.properties["smtp.mailfrom"] == "bounce@mail.example.org"
    assert dkim.method == "dkim"
    assert dkim.properties["header.d"] == "example.org"
    assert dkim.properties["header.b"] == "AbC;d"
    assert second.authserv_id == "other.example"
    assert second.results == []


def test_only_our_authserv_id_counts() -> None:
    forged = (
        "mx.attacker.example; dmarc=pass header.from=example.org; dkim=pass header.d=example.org"
    )
    assert not sender_verified(forged, MX, "ada@example.org")
    check = check_sender(forged, MX, "ada@example.org")
    assert "no Authentication-Results header from" in check.reason
    ours = f"{MX}; spf=fail smtp.mailfrom=example.org"
    assert not sender_verified(forged + "\n" + ours, MX, "ada@example.org")
    assert not sender_verified(forged, "", "ada@example.org")  # nothing configured: trust none


def test_dmarc_pass() -> None:
    value = f"{MX}; dmarc=pass (p=reject dis=none) header.from=example.org"
    check = check_sender(value, MX.upper(), "Ada@Example.org")
    assert check.verified
    assert check.method == "dmarc"
    assert not sender_verified(f"{MX}; dmarc=pass header.from=other.example", MX, "ada@example.org")


def test_dkim_alignment() -> None:
    assert sender_verified(f"{MX}; dkim=pass header.d=example.org", MX, "ada@example.org")
    assert sender_verified(f"{MX}; dkim=pass header.d=mail.example.org", MX, "ada@example.org")
    assert sender_verified(f"{MX}; dkim=pass header.i=@example.org", MX, "ada@news.example.org")
    assert not sender_verified(f"{MX}; dkim=pass header.d=esp.example", MX, "ada@example.org")
    assert not sender_verified(f"{MX}; dkim=fail header.d=example.org", MX, "ada@example.org")
    assert not sender_verified(f"{MX}; dkim=neutral header.d=example.org", MX, "ada@example.org")


def test_spf_alignment() -> None:
    assert sender_verified(f"{MX}; spf=pass smtp.mailfrom=ada@example.org", MX, "ada@example.org")
    assert sender_verified(f"{MX}; spf=pass smtp.mailfrom=bounces.example.org", MX, "a@example.org")
    check = check_sender(f"{MX}; spf=pass smtp.mailfrom=bounce@esp.example", MX, "a@example.org")
    assert not check.verified
    assert "spf=pass" in check.reason
    assert not sender_verified(f"{MX}; spf=softfail smtp.mailfrom=example.org", MX, "a@example.org")


def test_our_dmarc_fail_beats_a_forged_pass() -> None:
    # Forged headers sit below ours (our server adds its own at the top): only ours counts.
    value = f"{MX}; dmarc=fail header.from=example.org\n{MX}; dkim=pass header.d=example.org"
    assert not sender_verified(value, MX, "ada@example.org")
    same = f"{MX}; dkim=pass header.d=example.org; dmarc=fail header.from=example.org"
    assert not sender_verified(same, MX, "ada@example.org")


def test_alignment_needs_two_labels() -> None:
    assert aligned("example.org", "a.b.example.org")
    assert not aligned("org", "example.org")
    assert not aligned("ample.org", "example.org")
    assert not aligned("", "example.org")


def test_missing_header_or_sender() -> None:
    assert not sender_verified(None, MX, "ada@example.org")
    assert not sender_verified(f"{MX}; dkim=pass header.d=example.org", MX, "")


# -- ceilings, acknowledgements, challenges ----------------------------------------------


def test_ceiling() -> None:
    assert not over_ceiling(19)
    assert over_ceiling(20)
    assert over_ceiling(25)
    assert over_ceiling(3, ceiling=3)
    ceiling = RateCeiling()
    assert ceiling.window_start(NOW) == NOW - timedelta(hours=2)
    assert not ceiling.reached(19)
    assert ceiling.reached(20)


def ack(**changes: Any) -> Any:
    facts: dict[str, Any] = {
        "enabled": True,
        "new_case": True,
        "sender": "ada@example.org",
        "automation_reason": None,
        "backlog": False,
        "last_ack_at": None,
        "now": NOW,
        "sent_in_window": 0,
    }
    facts.update(changes)
    return should_auto_ack(**facts)


def test_auto_ack_for_a_new_case() -> None:
    assert ack() == (True, "new case from ada@example.org")
    assert ack(last_ack_at=NOW - timedelta(minutes=61)).send


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"enabled": False}, "off"),
        ({"new_case": False}, "new case"),
        ({"already_acknowledged": True}, "acknowledged already"),
        ({"automation_reason": "Auto-Submitted: auto-replied"}, "automated message"),
        ({"backlog": True}, "before fetching was turned on"),
        ({"last_ack_at": NOW - timedelta(minutes=59)}, "at most one per hour"),
        ({"sent_in_window": 20}, "ceiling reached"),
        ({"sender": ""}, "no sender"),
    ],
)
def test_no_auto_ack(changes: dict[str, Any], words: str) -> None:
    send, reason = ack(**changes)
    assert not send
    assert words in reason


def challenge(**changes: Any) -> Any:
    facts: dict[str, Any] = {
        "enabled": True,
        "held": True,
        "sender": "ada@example.org",
        "automation_reason": None,
        "backlog": False,
        "challenges_today": 0,
        "sender_verified": True,
        "sent_in_window": 0,
    }
    facts.update(changes)
    return should_challenge(**facts)


def test_challenge_a_verified_unknown_sender() -> None:
    assert challenge() == (True, "confirmation mail to ada@example.org")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"enabled": False}, "off"),
        ({"held": False}, "not held"),
        ({"automation_reason": "List-Id present (mailing list)"}, "held silently: automated"),
        ({"backlog": True}, "held silently"),
        ({"challenges_today": 1}, "today already"),
        ({"sender_verified": False, "verification_reason": "dkim=fail"}, "(dkim=fail)"),
        ({"sent_in_window": 20}, "ceiling reached"),
    ],
)
def test_no_challenge(changes: dict[str, Any], words: str) -> None:
    send, reason = challenge(**changes)
    assert not send
    assert words in reason


def test_custom_ceiling() -> None:
    small = RateCeiling(limit=2, window=timedelta(hours=1))
    assert not challenge(sent_in_window=2, ceiling=small).send
    assert "last 1 hours (limit 2)" in ack(sent_in_window=2, ceiling=small).reason


# -- confirmation links ------------------------------------------------------------------

SECRET = "test-secret-key"


def test_token_round_trip() -> None:
    token = make_token(42, SECRET)
    assert read_token(token, SECRET, max_age=3600) == 42
    assert read_token(token, SECRET, max_age=timedelta(days=7)) == 42
    assert read_token(token, ["old-key", SECRET], max_age=3600) == 42  # key rotation


@pytest.mark.parametrize(
    "token",
    [
        make_token(42, "another-secret"),
        make_token(42, SECRET)[:-2] + "xx",
        URLSafeTimedSerializer(SECRET).dumps(42),  # same key, another purpose (salt)
        URLSafeTimedSerializer(SECRET, salt="mailchannel.confirm-sender").dumps("42"),
        "",
        "not-a-token",
    ],
)
def test_forged_tokens(token: str) -> None:
    with pytest.raises(ConfirmationInvalid):
        read_token(token, SECRET, max_age=3600)


def test_expired_token(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 1_800_000_000}
    monkeypatch.setattr(
        "itsdangerous.timed.TimestampSigner.get_timestamp", lambda self: clock["now"]
    )
    token = make_token(7, SECRET)
    clock["now"] += 3599
    assert read_token(token, SECRET, max_age=3600) == 7
    clock["now"] += 2
    with pytest.raises(ConfirmationExpired):
        read_token(token, SECRET, max_age=3600)
    with pytest.raises(ConfirmationInvalid):  # a forged old token is forged, not expired
        read_token(make_token(7, "another-secret"), SECRET, max_age=1)


def test_token_arguments() -> None:
    with pytest.raises(ValueError):
        make_token(0, SECRET)
    with pytest.raises(ValueError):
        make_token(1, "")
