"""parse_message: headers read defensively, bodies, attachments, limits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers.cpu_budget import within_cpu_budget
from webapp.mail import parse as parse_module
from webapp.mail.charsets import decode_bytes
from webapp.mail.parse import (
    Attachment,
    ParsedMessage,
    ParseError,
    ParseLimits,
    TooLarge,
    parse_message,
)

DATA = Path(__file__).parent / "data" / "mail"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parse_file(name: str) -> ParsedMessage:
    return parse_message(load(name))


# -- headers -----------------------------------------------------------------------


def test_plain_reply_headers():
    msg = parse_file("plain_reply.eml")
    assert msg.message_id == "<reply-1@example.org>"
    assert msg.in_reply_to == ["<case-7@desk.example.com>", "<case-7-ack@desk.example.com>"]
    assert msg.references == ["<case-7@desk.example.com>", "<case-7-ack@desk.example.com>"]
    assert msg.subject == "Re: Drücker geht nicht"
    assert msg.from_name == "Berg, Anna"
    assert msg.from_addr == "Anna.Berg@Example.org"
    assert msg.from_addr_normalized == "anna.berg@example.org"
    assert msg.reply_to == "anna+replies@example.org"
    assert msg.to == ["support@desk.example.com", "bob@example.net"]
    assert msg.cc == ["jm@example.de"]
    assert msg.date == datetime(2026, 3, 3, 8, 15, tzinfo=UTC)
    assert msg.date.tzinfo is UTC
    assert msg.headers["return-path"] == "<anna@example.org>"
    assert msg.text.startswith("Thanks, it works again.\n\n\u2014 Anna\n")
    assert "\r" not in msg.text
    assert msg.html is None
    assert msg.attachments == []
    assert msg.is_report is False


def test_broken_headers_fall_back_instead_of_crashing():
    msg = parse_file("broken_headers.eml")
    assert msg.from_addr == "sender@example.com"
    assert msg.from_name == "Grüße"  # bogus charset: guessed, not lost
    assert msg.to == []  # "unlisted-recipients:;" makes the stdlib raise
    assert msg.cc == ["bob@example.com"]
    assert msg.subject == "Hello World café ÿ"  # unknown charset + raw 8-bit bytes
    assert msg.date is None
    assert "Date header could not be parsed" in msg.defects
    assert msg.message_id == "no-brackets@example.com"
    assert msg.in_reply_to == ["<first@example.com>", "<second@example.com>"]
    assert msg.text == "Grüße aus Köln"


def test_display_name_that_is_an_address_does_not_spoof_the_sender():
    raw = b"From: boss@example.com <attacker@evil.example>\nSubject: pay\n\nx\n"
    msg = parse_message(raw)
    assert msg.from_addr == "attacker@evil.example"
    assert msg.from_name == "boss@example.com"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("From: <a@example.com>", ("", "a@example.com")),
        ("From: a@example.com (Alice A.)", ("Alice A.", "a@example.com")),
        ('From: "Doe, \\"J\\"" <j@example.com>', ('Doe, "J"', "j@example.com")),
        ("From: =?iso-8859-1?q?Ren=E9?= <r@example.com>", ("René", "r@example.com")),
        ("From: Team: a@example.com, b@example.com;", ("", "a@example.com")),
        ("From: tim@example.com other@example.com", ("", "tim@example.com")),
    ],
)
def test_from_header_forms(header, expected):
    msg = parse_message(header.encode() + b"\nSubject: s\n\nbody\n")
    assert (msg.from_name, msg.from_addr) == expected


def test_encoded_words_split_inside_a_multibyte_character():
    # "ü" is C3 BC in UTF-8; each encoded word holds one of the two bytes.
    raw = b"Subject: =?utf-8?q?Gr=C3?= =?utf-8?q?=BC=C3=9Fe?= und =?utf-8?b?VMO8cg?=\n\nx\n"
    assert parse_message(raw).subject == "Grüße und Tür"


def test_unknown_and_missing_headers():
    msg = parse_message(b"X-Nothing: here\n\nJust a body.\n")
    assert msg.message_id is None
    assert msg.subject == ""
    assert msg.from_addr == ""
    assert msg.from_addr_normalized == ""
    assert msg.reply_to is None
    assert msg.date is None
    assert msg.text == "Just a body."


def test_naive_date_is_treated_as_utc():
    msg = parse_message(b"Date: Tue, 3 Mar 2026 09:15:00 -0000\n\nx\n")
    assert msg.date == datetime(2026, 3, 3, 9, 15, tzinfo=UTC)


def test_headers_of_interest_are_collected_and_joined():
    raw = (
        b"Authentication-Results: mx1; spf=pass\n"
        b"Authentication-Results: mx2; dkim=pass\n"
        b"Precedence: bulk\nList-Id: <list.example.com>\n\nx\n"
    )
    headers = parse_message(raw).headers
    assert headers["authentication-results"] == "mx1; spf=pass\nmx2; dkim=pass"
    assert headers["precedence"] == "bulk"
    assert headers["list-id"] == "<list.example.com>"


def test_iso_2022_jp_subject_and_body():
    msg = parse_file("iso2022jp.eml")
    assert msg.subject == "日本語の件名"
    assert msg.text == "本文です。"


def test_nul_bytes_and_lone_surrogates_never_reach_the_result():
    raw = b"Subject: a\x00b\n\nline\x00one\n"
    msg = parse_message(raw)
    assert msg.subject == "ab"
    assert msg.text == "lineone"


# -- bodies and attachments --------------------------------------------------------


def test_related_alternative_and_attachments_in_mime_order():
    msg = parse_file("related_with_attachments.eml")
    assert msg.text == "Café screenshot attached."
    assert msg.html == '<p>Café screenshot: <img src="cid:shot.1@example.com"></p>'
    names = [a.filename for a in msg.attachments]
    assert names == ["image.png", "Rechnung März.pdf", "отчет.txt", "notes.txt"]
    image, pdf, report, notes = msg.attachments
    assert isinstance(image, Attachment)
    assert image.inline is True
    assert image.content_id == "shot.1@example.com"
    assert image.content_type == "image/png"
    assert image.data.startswith(b"\x89PNG")
    assert image.size == len(image.data)
    assert pdf.inline is False
    assert pdf.disposition == "attachment"
    assert pdf.data == b"%PDF-1.4 tiny"
    assert report.data == b"report"
    assert notes.content_type == "text/plain"  # a text part with a filename is a file
    assert notes.data.strip() == b"plain text file"


def test_html_only_message_gets_text_from_html():
    msg = parse_file("html_only.eml")
    assert msg.html is not None
    assert "<script>" in msg.html  # raw: sanitise at display
    assert msg.text.startswith("Works now & thanks!\n\nGreta")
    assert "> Old text" in msg.text  # blockquote becomes a quote
    assert "alert" not in msg.text


def test_bounce_is_a_delivery_status_report():
    msg = parse_file("bounce.eml")
    assert msg.is_report is True
    assert msg.report_type == "delivery-status"
    assert msg.text == "This is the mail system. Your message could not be delivered."
    status, original = msg.attachments
    assert status.filename == "delivery-status.txt"
    assert b"Status: 5.1.1" in status.data
    assert original.filename == "forwarded-message.eml"
    assert original.content_type == "message/rfc822"
    assert original.data.startswith(b"From: support@desk.example.com")


def test_forwarded_message_and_winmail_dat_are_kept_as_attachments():
    msg = parse_file("forward_and_tnef.eml")
    assert msg.text == "See the forwarded message."
    forwarded, tnef = msg.attachments
    assert forwarded.filename == "forwarded-message.eml"
    assert b"Subject: Your order" in forwarded.data
    assert b"Order 42 shipped." in forwarded.data
    assert tnef.filename == "winmail.dat"
    assert tnef.content_type == "application/ms-tnef"
    assert tnef.size == 24


def test_missing_header_body_separator():
    msg = parse_file("no_separator.eml")
    assert msg.subject == "no blank line"
    assert msg.text == "This line is body text, not a header.\nSecond body line."
    assert "MissingHeaderBodySeparatorDefect" in msg.defects


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_line_endings(newline):
    raw = load("bounce.eml").replace(b"\n", newline)
    msg = parse_message(raw)
    assert msg.subject == "Undelivered Mail Returned to Sender"
    assert msg.text == "This is the mail system. Your message could not be delivered."
    assert msg.report_type == "delivery-status"
    assert [a.filename for a in msg.attachments] == ["delivery-status.txt", "forwarded-message.eml"]


def test_byte_order_mark_and_leading_blank_lines_are_ignored():
    msg = parse_message(b"\xef\xbb\xbf\r\nSubject: hi\r\n\r\nbody\r\n")
    assert msg.subject == "hi"
    assert msg.text == "body"


def test_multipart_without_boundary_is_read_as_text():
    raw = b"Subject: x\nContent-Type: multipart/mixed\n\nJust text after all.\n"
    msg = parse_message(raw)
    assert msg.text == "Just text after all."
    assert msg.attachments == []


def test_missing_boundaries_keep_what_is_there():
    raw = (
        b'Subject: x\nContent-Type: multipart/mixed; boundary="abc"\n\n'
        b"--abc\nContent-Type: text/plain\n\nfirst part\n"
    )  # no closing boundary
    msg = parse_message(raw)
    assert msg.text == "first part"
    assert "CloseBoundaryNotFoundDefect" in msg.defects


def test_unknown_charset_and_undeclared_8bit_text():
    assert decode_bytes("Köln".encode("cp1252"), "x-bogus") == "Köln"
    assert decode_bytes("Köln".encode(), None) == "Köln"
    assert decode_bytes(b"\x1b$B$3$s$K$A$O\x1b(B", None) == "こんにちは"
    assert decode_bytes(b"ok", "unicode-1-1-utf-7") == "ok"
    assert decode_bytes(b"\xff\xfe", "utf-8") == "\ufffd\ufffd"


def test_only_inline_text_files_become_the_body():
    raw = (
        b'Subject: x\nContent-Type: multipart/mixed; boundary="b"\n\n'
        b'--b\nContent-Type: text/plain\nContent-Disposition: inline; filename="a.txt"\n\n'
        b"hello from a file\n--b--\n"
    )
    msg = parse_message(raw)
    assert msg.text == "hello from a file"
    assert [a.filename for a in msg.attachments] == ["a.txt"]


def test_from_addr_normalized_defaults_when_built_by_hand():
    assert ParsedMessage(from_addr="X@Example.COM").from_addr_normalized == "x@example.com"


# -- limits and unusable input -----------------------------------------------------


def test_too_large_raises_too_large_before_parsing():
    with pytest.raises(TooLarge) as caught:
        parse_message(b"Subject: x\n\n" + b"a" * 3000, ParseLimits(max_raw_bytes=2048))
    assert caught.value.reason == "message is 3 KB, over the 2 KB limit"
    assert isinstance(caught.value, ParseError)


def test_header_block_over_the_limit():
    raw = b"".join(b"X-Filler-%d: %s\n" % (i, b"y" * 100) for i in range(3000)) + b"\nbody\n"
    with pytest.raises(ParseError) as caught:
        parse_message(raw)
    assert caught.value.reason.startswith("header block is 3")
    assert caught.value.reason.endswith("KB, over the 256 KB limit")


def nested(depth: int) -> bytes:
    head = b"".join(
        b'--b%d\nContent-Type: multipart/mixed; boundary="b%d"\n\n' % (i, i + 1)
        for i in range(depth)
    )
    tail = b"".join(b"--b%d--\n" % i for i in reversed(range(depth + 1)))
    return b'Subject: deep\nContent-Type: multipart/mixed; boundary="b0"\n\n' + head + tail


def test_nesting_deeper_than_the_limit():
    parse_message(nested(5), ParseLimits(max_depth=10))
    with pytest.raises(ParseError, match="nested more than 10 levels deep"):
        parse_message(nested(15), ParseLimits(max_depth=10))


def many_parts(count: int) -> bytes:
    parts = b"".join(b"--b\nContent-Type: text/plain\n\npart %d\n" % i for i in range(count))
    return b'Subject: many\nContent-Type: multipart/mixed; boundary="b"\n\n' + parts + b"--b--\n"


def test_too_many_parts():
    assert len(parse_message(many_parts(50), ParseLimits(max_parts=60)).text) > 0
    with pytest.raises(ParseError, match="more than 60 MIME parts"):
        parse_message(many_parts(70), ParseLimits(max_parts=60))


def test_grossly_too_many_parts_are_refused_before_parsing(monkeypatch):
    def fail(*args):
        raise AssertionError("the tree should not be built")

    monkeypatch.setattr(parse_module, "_build_tree", fail)
    with pytest.raises(ParseError, match="about 5001 MIME parts, over the 500 limit"):
        parse_message(many_parts(5000))


def test_time_limit_is_checked_while_walking():
    with pytest.raises(ParseError) as caught:
        parse_message(load("related_with_attachments.eml"), ParseLimits(max_parse_seconds=0))
    assert caught.value.reason == "parsing took longer than 0 s"


def test_pathological_address_header_stays_fast():
    words = b"\n ".join([b"=?utf-8?Q?date=3E2017-08-20T10:08:28.617=3C/pr?="] * 4000)
    raw = b'From: "t" <t@example.com>\nTo: "t" <t@example.com>,\n ' + words + b"\n\nx\n"
    msg = within_cpu_budget(parse_message, raw)
    assert msg.to[0] == "t@example.com"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "the message is empty"),
        (b"\r\n\r\n", "the message is empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "Outlook .msg file"),
        (b"\x00\x01\x02binary\x00junk", "not an email"),
    ],
)
def test_unusable_input(raw, reason):
    with pytest.raises(ParseError) as caught:
        parse_message(raw)
    assert reason in caught.value.reason


def test_unexpected_exceptions_become_parse_errors(monkeypatch):
    def boom(*args):
        raise KeyError("surprise")

    monkeypatch.setattr(parse_module, "_read_parts", boom)
    with pytest.raises(ParseError) as caught:
        parse_file("plain_reply.eml")
    assert caught.value.reason.startswith("unexpected KeyError while parsing")
