"""Case numbers (案号): parse, normalise, check. Pure functions, no I/O.

The form is fixed by 《关于人民法院案件案号的若干规定》(法〔2015〕137号, in force 2016-01-01):
``（收案年度）+法院代字+类型代字+案件编号+号``, e.g. ``（2025）吉0102执1203号``; a document number
may add ``之一…`` (``（2025）吉0102执1203号之一``). The regex is the rule book's (domain/rulebook.md
§5), restricted to enforcement type codes (执, 执恢, 执保, 执异, 执复, 执监, 执协, 执他, 执请).

Two different questions, kept apart (domain/events.md, "Conventions"):

- *Is it normalised?* Full-width brackets, ASCII digits, no whitespace. The submitting system
  normalises before it signs; the node refuses any other form (``case_not_normalised``) rather
  than rewrite a signed payload. :func:`check_normalised` is that admission check.
- *Does it match the regex?* A normalised number outside it (a legacy ``…执字第…号`` number, a
  non-enforcement number, a year before 2016) is accepted and only flagged by the verifier as
  INFO ``CASENO-01``. :func:`parse` answers that question; it never refuses anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ledger.errors import AdmissionError

#: Provincial court codes (rule book §5, ○ from memory: 黔 and 云 are the forms seen in real use).
PROVINCES = "京津冀晋内辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川黔云藏陕甘青宁新军兵"

#: Enforcement type codes, longest first so that ``执恢`` is not read as ``执`` + ``恢``.
ENFORCEMENT_TYPES = ("执恢", "执保", "执异", "执复", "执监", "执协", "执他", "执请", "执")

#: First year of the 法〔2015〕137号 format (rule book §5: "Require year ≥ 2016").
FIRST_YEAR = 2016

# The rule book's regex over the *normalised* form: full-width brackets only, ASCII digits only
# (re.ASCII keeps \d from matching full-width digits, which normalisation has already replaced).
CASE_NO_RE = re.compile(
    r"^（(?P<year>(?:19|20)\d{2})）"
    r"(?P<court>最高法|[" + PROVINCES + r"](?:\d{4}|\d{2})?)"
    r"(?P<type>" + "|".join(ENFORCEMENT_TYPES) + r")"
    r"(?P<seq>[1-9]\d{0,6})号"
    r"(?P<suffix>之[一二三四五六七八九十]+)?$",
    re.ASCII,
)

_HALF_TO_FULL = str.maketrans({"(": "（", ")": "）"})
# Full-width digits U+FF10…U+FF19 → ASCII.
_FULLWIDTH_DIGITS = str.maketrans({chr(0xFF10 + i): str(i) for i in range(10)})
_WHITESPACE = re.compile(r"\s+")  # str patterns match Unicode whitespace, U+3000 included


class CaseNumberError(AdmissionError, ValueError):
    """A 案号 or ``doc_no`` that is not in normalised form (admission refusal, never validity)."""

    code = "case_not_normalised"


@dataclass(frozen=True, slots=True)
class CaseNo:
    """A parsed enforcement 案号: ``（year）court type seq 号 suffix``."""

    year: int
    court: str  # 法院代字, e.g. ``吉0102`` or ``最高法``
    type: str  # 类型代字, e.g. ``执`` or ``执恢``
    seq: int
    suffix: str  # ``之一`` … on document numbers, else ""

    @property
    def case(self) -> str:
        """The case number without a document suffix: ``（2025）吉0102执1203号``."""
        return f"（{self.year}）{self.court}{self.type}{self.seq}号"

    def __str__(self) -> str:
        return self.case + self.suffix


def normalise(text: str) -> str:
    """Return the normalised form: full-width brackets, ASCII digits, all whitespace removed.

    Used by submitting systems before they sign; the ledger itself never rewrites a payload.
    """
    text = _WHITESPACE.sub("", text)
    return text.translate(_HALF_TO_FULL).translate(_FULLWIDTH_DIGITS)


def is_normalised(text: str) -> bool:
    """True when ``text`` is non-empty and already equal to :func:`normalise` of itself."""
    return bool(text) and normalise(text) == text


def check_normalised(text: object, field: str = "case") -> str:
    """Admission check: return ``text`` if it is a normalised 案号/文书号, else raise.

    Raises :class:`CaseNumberError` (an :class:`~ledger.errors.AdmissionError` and a
    ``ValueError``) naming the field and the normalised form the submitter should have signed.
    A normalised number that does not match :data:`CASE_NO_RE` passes: that is the verifier's
    INFO finding ``CASENO-01``, never a refusal.
    """
    if not isinstance(text, str):
        raise CaseNumberError(f"{field} must be a string, got {type(text).__name__}")
    if not text:
        raise CaseNumberError(f"{field} is empty")
    if not is_normalised(text):
        raise CaseNumberError(
            f"{field} {text!r} is not normalised (full-width brackets, ASCII digits, "
            f"no spaces); sign {normalise(text)!r} instead"
        )
    return text


def parse(text: str) -> CaseNo | None:
    """Parse a normalised enforcement 案号 or document number, or return None.

    None means "outside the rule book's regex" (CASENO-01): a half-width or spaced form, a
    non-enforcement type such as ``民初``, the pre-2016 ``…执字第…号`` form, or a year before
    :data:`FIRST_YEAR`.
    """
    m = CASE_NO_RE.match(text)
    if m is None:
        return None
    year = int(m["year"])
    if year < FIRST_YEAR:
        return None
    return CaseNo(year, m["court"], m["type"], int(m["seq"]), m["suffix"] or "")


def matches(text: str) -> bool:
    """True when ``text`` is a normalised enforcement 案号 of the 2016 format (:func:`parse`)."""
    return parse(text) is not None
