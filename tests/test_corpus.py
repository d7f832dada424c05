"""Every message of the shared real-world corpus parses or fails with a reason.

Runs only where ../shared/corpus (relative to the repository root) exists.
"""

from __future__ import annotations

import mailbox
import time
from collections import Counter
from pathlib import Path

import pytest

from webapp.mail.automation import automation_reason
from webapp.mail.parse import ParsedMessage, ParseError, parse_message

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
SKIPPED_NAMES = ("LICENSE", "MIT-LICENSE", "README", "NOTE", "MANIFEST")

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")

# The only messages that may fail, and why: neither is an email.
EXPECTED_PARSE_ERRORS = {
    "mail-parser/mail_outlook_1": "Outlook .msg file",  # OLE binary
    "cpython/mailbox_01.mbox#1": "empty",  # mbox split at an unquoted "From " body line
}


def corpus_messages() -> list[tuple[str, bytes]]:
    """(name, raw bytes) of every message outside replies/; mbox files split per message."""
    if not CORPUS.is_dir():
        return []
    found = []
    for path in sorted(CORPUS.rglob("*")):
        relative = path.relative_to(CORPUS).as_posix()
        if not path.is_file() or relative.startswith("replies/"):
            continue
        if path.name.startswith(SKIPPED_NAMES):
            continue
        if path.suffix == ".mbox":
            for index, message in enumerate(mailbox.mbox(path)):
                found.append((f"{relative}#{index}", message.as_bytes()))
        else:
            found.append((relative, path.read_bytes()))
    return found


MESSAGES = corpus_messages()


def parse(name: str) -> ParsedMessage:
    return parse_message((CORPUS / name).read_bytes())


@pytest.mark.parametrize(("name", "raw"), MESSAGES, ids=[name for name, _ in MESSAGES])
def test_message_parses_or_fails_with_a_reason(name, raw):
    try:
        msg = parse_message(raw)
    except ParseError as error:
        assert error.reason.strip()
        assert name in EXPECTED_PARSE_ERRORS, f"{name}: {error.reason}"
        assert EXPECTED_PARSE_ERRORS[name] in error.reason
        return
    assert isinstance(msg, ParsedMessage)
    assert name not in EXPECTED_PARSE_ERRORS
    assert msg.date is None or msg.date.utcoffset().total_seconds() == 0
    for value in (msg.subject, msg.text, msg.html or "", msg.from_addr, *msg.to):
        value.encode("utf-8")  # no lone surrogates
        assert "\x00" not in value
    for attachment in msg.attachments:
        assert attachment.filename
        assert "/" not in attachment.filename
        assert attachment.size == len(attachment.data)


def test_corpus_summary(capsys):
    """Parse everything once; report counts, reasons and speed."""
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    started = time.perf_counter()
    for _, raw in MESSAGES:
        try:
            parse_message(raw)
            outcomes["parsed"] += 1
        except ParseError as error:
            outcomes["ParseError"] += 1
            reasons[error.reason] += 1
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\ncorpus: {len(MESSAGES)} messages, {outcomes['parsed']} parsed, "
            f"{outcomes['ParseError']} ParseError, {len(MESSAGES) / elapsed:.0f} messages/s"
        )
        for reason, count in reasons.most_common():
            print(f"  {count} x {reason}")
    assert outcomes["parsed"] + outcomes["ParseError"] == len(MESSAGES)
    assert outcomes["ParseError"] == len(EXPECTED_PARSE_ERRORS)


# -- facts about particular messages -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sisimai/maildir/bsd/rfc3834-01.eml", "Auto-Submitted: auto-replied"),
        ("sisimai/maildir/bsd/rfc3834-02.eml", "X-Auto-Response-Suppress present"),
        ("sisimai/maildir/bsd/rfc3834-03.eml", "X-Apple-Action: VACATION (iCloud auto-reply)"),
        ("sisimai/maildir/bsd/rfc3834-04.eml", "X-Auto-Response-Suppress present"),
        ("sisimai/maildir/bsd/rfc3834-05.eml", "Auto-Submitted: auto-replied"),
        ("sisimai/maildir/bsd/rfc3834-06.eml", "Auto-Submitted: auto-replied"),
        ("chatwoot/non_utf_encoded_mail.eml", "Auto-Submitted: auto-replied"),
        ("sisimai/maildir/bsd/lhost-gmail-01.eml", "null Return-Path <> (bounce or auto-reply)"),
        ("flanker/complaints/yahoo.eml", "multipart/report (feedback-report)"),
        (
            "sisimai/maildir/bsd/lhost-yahoo-01.eml",
            "sender MAILER-DAEMON@y.example.co.jp is a machine address",
        ),
    ],
)
def test_automated_messages_are_recognised(name, reason):
    assert automation_reason(parse(name)) == reason


@pytest.mark.parametrize(
    "name",
    [
        "talon/standard_replies/gmail.eml",
        "chatwoot/mail_with_quote.eml",
        "mikel-mail/multi_charset/japanese.eml",
    ],
)
def test_people_are_not_flagged_as_automated(name):
    assert automation_reason(parse(name)) is None


@pytest.mark.parametrize(
    "name",
    [
        "chatwoot/bounced_gmail.eml",
        "sisimai/maildir/bsd/lhost-postfix-01.eml",
        "sisimai/maildir/dos/lhost-postfix-01.eml",
        "sisimai/maildir/mac/lhost-postfix-01.eml",
        "mimekit/messages/delivery-status.txt",
    ],
)
def test_bounces_are_delivery_status_reports(name):
    msg = parse(name)
    assert msg.is_report is True
    assert msg.report_type == "delivery-status"
    assert any(a.content_type == "message/delivery-status" for a in msg.attachments)


def test_line_ending_variants_of_one_bounce_agree():
    unix, dos, mac = (
        parse(f"sisimai/maildir/{kind}/lhost-postfix-01.eml") for kind in ("bsd", "dos", "mac")
    )
    assert unix.subject == dos.subject == mac.subject == "Undelivered Mail Returned to Sender"
    assert unix.text == dos.text == mac.text
    assert [a.filename for a in unix.attachments] == [a.filename for a in mac.attachments]


def test_multiple_in_reply_to_ids():
    msg = parse("chatwoot/multiple_in_reply_to.eml")
    assert msg.in_reply_to == [
        "<4e6e35f5a38b4_479f13bb90078171@small-app-01.mail>",
        "<4e6e35f5a38b4_479f13bb90078131@small-app-01.mail>",
    ]
    assert msg.references == ["<4e6e35f5a38b4_479f13bb90078178@small-app-01.mail>"]


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("mimekit/messages/japanese.txt", "日本語メールテスト (testing Japanese emails)"),
        ("mikel-mail/multi_charset/japanese_iso_2022.eml", "まみむめも"),
    ],
)
def test_iso_2022_jp_subjects_decode_to_japanese(name, subject):
    assert parse(name).subject == subject


@pytest.mark.parametrize(
    "name",
    [
        "django-mailbox/message_with_invalid_encoding.eml",  # charset "_iso-2022-jp$ESC"
        "sisimai/maildir/bsd/lhost-x3-01.eml",  # charset "uft-8"
        "mikel-mail/error_emails/bad_encoded_subject.eml",  # encoded word in charset NONE
        "mimekit/messages/delivery-status.txt",  # To: unlisted-recipients:; (stdlib raises)
        "cpython/msg_41.txt",  # multipart without a boundary
        "cpython/msg_15.txt",  # nested multipart reusing the outer boundary
    ],
)
def test_bogus_charsets_and_broken_structure_do_not_crash(name):
    msg = parse(name)
    assert msg.text.strip() or msg.attachments
    msg.text.encode("utf-8")


def test_unknown_charset_body_is_readable():
    msg = parse("django-mailbox/message_with_invalid_encoding.eml")
    assert msg.text.startswith("We offer loans to private individuals")


def test_winmail_dat_and_forwarded_messages_are_attachments():
    tnef = parse("mimekit/tnef/ukr.eml")
    assert [a.filename for a in tnef.attachments] == ["winmail.dat"]
    assert tnef.text.startswith("шостий")  # koi8-r text part
    forwarded = parse("cpython/msg_46.txt")
    assert [a.filename for a in forwarded.attachments] == ["forwarded-message.eml"]


def test_rfc2231_and_rfc2047_filenames():
    long_name = parse("mikel-mail/multi_charset/japanese_attachment_long_name.eml")
    assert (
        long_name.attachments[0].filename
        == "かきくけこかきくけこかきくけこかきくけこかきくけこ.txt"
    )
    utf8 = parse("django-mailbox/message_with_utf8_attachment.eml")
    assert [a.filename for a in utf8.attachments] == ["piłkochwyty.jpg", "odpowiedź Burmistrza.jpg"]


def test_spoofed_display_name_keeps_the_real_address():
    assert parse("mail-parser/mail_test_19").from_addr == "bob@example.com"
