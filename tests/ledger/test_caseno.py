"""案号 parsing and normalisation (domain/rulebook.md §5; domain/events.md "Conventions")."""

from __future__ import annotations

import pytest

from ledger.caseno import (
    CaseNumberError,
    check_normalised,
    is_normalised,
    matches,
    normalise,
    parse,
)
from ledger.errors import AdmissionError


@pytest.mark.parametrize(
    "text",
    [
        # The rule book's test list (§5), normalised to full-width brackets.
        "(2019)沪0115执1234号",
        "(2018)沪0115执15507号",
        "(2021)最高法执监344号",
        "(2020)湘执复244号",
        "(2018)湘01执12号",
    ],
)
def test_rulebook_examples_match_once_normalised(text: str) -> None:
    assert not is_normalised(text)
    assert matches(normalise(text))


def test_parse_fields_and_suffix() -> None:
    c = parse("（2025）吉0102执恢1203号之一")
    assert c is not None
    assert (c.year, c.court, c.type, c.seq, c.suffix) == (2025, "吉0102", "执恢", 1203, "之一")
    assert c.case == "（2025）吉0102执恢1203号"
    assert str(c) == "（2025）吉0102执恢1203号之一"


@pytest.mark.parametrize(
    "text",
    [
        "（2017）吉01民初770号",  # not an enforcement type (rule book §5 rejects 民初)
        "（2015）浦执字第123号",  # legacy form
        "（2015）吉0102执12号",  # year before the 2016 format
        "（2019）沪0115执0123号",  # sequence with a leading zero
        "（2019）沪115执123号",  # three-digit court code
        "(2019)沪0115执1234号",  # half-width brackets: not the normalised form
    ],
)
def test_outside_regex(text: str) -> None:
    assert parse(text) is None


def test_normalise_spaces_digits_brackets() -> None:
    assert normalise(" (２０２５) 吉0102执\u30001203号 ") == "（2025）吉0102执1203号"


def test_check_normalised_refuses_with_hint() -> None:
    with pytest.raises(CaseNumberError) as exc:
        check_normalised("(2025)吉0102执1203号")
    assert isinstance(exc.value, AdmissionError) and isinstance(exc.value, ValueError)
    assert exc.value.code == "case_not_normalised"
    assert "（2025）吉0102执1203号" in str(exc.value)
    with pytest.raises(CaseNumberError):
        check_normalised("")
    with pytest.raises(CaseNumberError):
        check_normalised(123)


def test_normalised_legacy_number_is_accepted() -> None:
    # events.md: a normalised number outside the regex is accepted (CASENO-01 is INFO only).
    assert check_normalised("（2015）浦执字第123号") == "（2015）浦执字第123号"
