"""mail/thread.py: case tokens in subjects, the Message-IDs a message answers, References."""

from __future__ import annotations

import pytest

from webapp.mail.thread import case_numbers, case_token, find_case_token, subject_with_token


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
