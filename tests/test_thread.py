"""mail/thread.py: case tokens in subjects, the Message-IDs a message answers, References."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from webapp.mail.parse import ParsedMessage, parse_message
from webapp.mail.thread import (
    answered_ids,
    capped_ids,
    case_numbers,
    case_token,
    confirmation_ids,
    find_case_token,
    header_ids,
    nearest_first,
    reference_chain,
    reply_references,
    subject_with_token,
)


def test_case_tokens() -> None:
    assert case_token(123) == "[#123]"
    assert subject_with_token("Printer jammed", 123) == "[#123] Printer jammed"
    assert subject_with_token("[#123] Printer jammed", 123) == "[#123] Printer jammed"
    assert subject_with_token("RE: Re: AW: Printer jammed", 123) == "Re: [#123] Printer jammed"
    assert subject_with_token("Re: [#123] Printer jammed", 123) == "Re: [#123] Printer jammed"
    assert subject_with_token("Printer [#123] jammed", 123) == "[#123] Printer jammed"
    assert subject_with_token("", 7) == "[#7]"
    assert find_case_token("Re: [#123] Printer") == 123
    assert find_case_token("Printer jammed") is None and find_case_token(None) is None
    with pytest.raises(ValueError):
        case_token(0)


def test_case_numbers_are_every_token_in_order() -> None:
    assert case_numbers("Re: [#12] merged into [#7] (was [#0])") == [12, 7, 0]
    assert case_numbers("[#1234567890] too long, [#5]") == [5]
    assert case_numbers("no token") == [] and case_numbers(None) == []


def test_find_case_token_takes_only_the_first_token() -> None:
    assert find_case_token("[#0] then [#5]") is None
    assert find_case_token("Fwd: [#5] and [#6]") == 5
    assert find_case_token("[#1234567890]") is None


# -- the Message-IDs an incoming message answers -----------------------------------------


def reply(in_reply_to: list[str], references: list[str]) -> ParsedMessage:
    return ParsedMessage(in_reply_to=in_reply_to, references=references)


def test_answered_ids_try_the_nearest_parent_first() -> None:
    parsed = parse_message(
        b"From: ada@example.org\r\nSubject: Re: drum\r\n"
        b"In-Reply-To: <ack@desk.example>\r\n"
        b"References: <root@ada.example> <ack@desk.example> <other@ada.example>\r\n\r\nThanks\r\n"
    )
    assert nearest_first(parsed) == [
        "<ack@desk.example>", "<other@ada.example>", "<ack@desk.example>", "<root@ada.example>",
    ]  # fmt: skip
    assert answered_ids(parsed) == [
        "<ack@desk.example>",
        "<other@ada.example>",
        "<root@ada.example>",
    ]


def test_answered_ids_are_cut_and_capped() -> None:
    long_id = "<" + "x" * 1200 + "@example.org>"
    many = [f"<{n}@example.org>" for n in range(150)]
    ids = answered_ids(reply([long_id], many))
    assert len(ids) == 100 and ids[0] == long_id[:998] and ids[1] == "<149@example.org>"
    assert ids[-1] == "<51@example.org>"


def test_capped_ids_dedupe_before_cutting() -> None:
    a, b = "<" + "a" * 998 + "1>", "<" + "a" * 998 + "2>"
    assert capped_ids([a, b, a]) == [a[:998], b[:998]]  # equal once cut: both kept
    assert capped_ids(iter(["<x@y>", "<x@y>", "<z@y>"])) == ["<x@y>", "<z@y>"]


def test_confirmation_ids_keep_header_order_and_repeats() -> None:
    parsed = reply(["<c@desk.example>"], ["<root@ada.example>", "<c@desk.example>"])
    assert confirmation_ids(parsed) == [
        "<c@desk.example>",
        "<root@ada.example>",
        "<c@desk.example>",
    ]
    many = [f"<{n}@example.org>" for n in range(150)]
    assert confirmation_ids(reply([], many)) == many[:100]


@dataclass
class Stored:
    """Something ParsedMessage-like that is not one: the functions read two attributes only."""

    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)


def test_ids_of_a_message_without_thread_headers() -> None:
    assert answered_ids(Stored()) == [] and confirmation_ids(Stored()) == []


# -- the thread headers of a message we send ---------------------------------------------


def test_header_ids_keep_only_well_formed_ids() -> None:
    assert header_ids("<a@x> junk <b@x>") == ["<a@x>", "<b@x>"]
    assert header_ids("a@x b@x") == ["<a@x>", "<b@x>"]  # brackets missing
    assert header_ids("<a b@x> <ok@x> <>") == ["<ok@x>"]
    assert header_ids("a@x\x00b@x") == ["<a@x>", "<b@x>"]  # a control character separates
    assert header_ids("") == []


def test_reply_references_end_with_the_parent() -> None:
    assert reply_references(["<root@x>", "<mid@x>"], "<parent@x>") == [
        "<root@x>", "<mid@x>", "<parent@x>",
    ]  # fmt: skip
    assert reply_references(["<root@x>"], None) == ["<root@x>"]
    assert reply_references([], "") == []


def test_reference_chain_has_every_id_once_and_the_parent_last() -> None:
    chain = reference_chain(["<root@x> <parent@x>", "<mid@x> <root@x>"], "<parent@x>")
    assert chain == ["<root@x>", "<mid@x>", "<parent@x>"]
    assert reference_chain([], None) == [] and reference_chain(["<a@x>"], None) == ["<a@x>"]
    assert reference_chain(["<bad id@x>", "<>"], "<p@x>") == ["<p@x>"]


def test_a_long_reference_chain_keeps_the_root_and_the_recent_tail() -> None:
    ids = [f"<{n}@x>" for n in range(30)]
    chain = reference_chain(ids, "<parent@x>")
    assert len(chain) == 20
    assert chain == ["<0@x>", *ids[-18:], "<parent@x>"]
