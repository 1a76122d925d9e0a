"""Deadline warnings and boundaries (民诉法 §85; rulebook §2; events.md "How the rules read time").

Boundaries on each kind of deadline: the day before, the day, the day after, across a public
holiday; the T-30d / T-7d / T-1d / lapsed levels; a calendar year the package does not cover.
"""

from __future__ import annotations

import datetime as dt

from casebook import A1, CASE, D1, O1, Book, compliant, day
from test_inspect_rules import hits, move

from verifier.periods import (
    DAY_MS,
    beijing_date,
    day_start,
    due_after_days,
    due_after_months,
    due_on,
    more_than_months,
    parse_now,
)


def at(y: int, m: int, d: int, hour: int = 10) -> int:
    return day_start(dt.date(y, m, d)) + hour * 3_600_000


# -- §85 counting ---------------------------------------------------------------------------

def test_start_day_not_counted_and_working_day_kept() -> None:
    due = due_after_days(at(2025, 3, 3), 7)  # 03-10 is a Monday
    assert due.last_day == dt.date(2025, 3, 10) and not due.provisional


def test_last_day_on_national_day_rolls_to_next_working_day() -> None:
    # 2025-09-01 + 30 days = 10-01, in the National Day holiday (10-01 … 10-08): rolls to 10-09.
    due = due_after_days(at(2025, 9, 1), 30)
    assert due.last_day == dt.date(2025, 10, 9)


def test_weekend_rolls_and_swapped_working_day_does_not() -> None:
    assert due_after_days(at(2025, 3, 1), 7).last_day == dt.date(2025, 3, 10)  # Sat → Mon
    # 2025-09-28 is a Sunday made a working day (调休): the period ends on it.
    assert due_after_days(at(2025, 9, 21), 7).last_day == dt.date(2025, 9, 28)


def test_months_clamp_to_month_end() -> None:
    assert due_after_months(at(2025, 8, 31), 6, roll=False).last_day == dt.date(2026, 2, 28)


def test_year_outside_the_package_is_provisional() -> None:
    due = due_after_days(at(2026, 12, 20), 30)  # 2027-01-19: the package stops at 2026
    assert due.provisional and due.last_day == dt.date(2027, 1, 19)


def test_more_than_three_months_has_no_roll() -> None:
    filed = at(2025, 3, 3)
    assert not more_than_months(filed, 3, at(2025, 6, 3))
    assert more_than_months(filed, 3, at(2025, 6, 4))


def test_parse_now_forms() -> None:
    assert parse_now("2025-07-01") == day_start(dt.date(2025, 7, 1))
    assert parse_now("2025-07-01T00:00:00+08:00") == day_start(dt.date(2025, 7, 1))
    assert parse_now("1751299200000") == 1751299200000
    assert beijing_date(parse_now("2025-06-30T16:00:00Z")) == dt.date(2025, 7, 1)


# -- boundaries on the rules ----------------------------------------------------------------

def test_zb01_boundary() -> None:
    b = compliant()
    move("ZB_RULING_ISSUED", 92)(b)  # 2025-06-03: exactly three months, not "more than"
    assert hits(b, "ZB-01")
    move("ZB_RULING_ISSUED", 93)(b)  # 06-04
    assert hits(b, "ZB-01") == []


def test_nd01_day_before_the_day_and_day_after() -> None:
    b = compliant()
    for n, fires in ((6, False), (7, False), (8, True)):  # due 2025-03-10 (day 7)
        move("HANDLER_ASSIGNED", n)(b)
        assert bool(hits(b, "ND-01")) is fires, n


def payout_case(received: int, paid: int | None) -> Book:
    b = compliant()
    b.add("FUNDS_RECEIVED", 0, funds_id="F1", amount_fen=100, payer=D1).at = received
    if paid is not None:
        b.add("FUNDS_DISBURSED", 0, funds_id="F1", amount_fen=100, payee=A1).at = paid
    return b


def test_payout_across_national_day() -> None:
    received = at(2025, 9, 1)
    now = at(2025, 11, 1)
    for paid, fires in ((at(2025, 10, 8), False), (at(2025, 10, 9), False),
                        (at(2025, 10, 10), True)):
        assert bool(hits(payout_case(received, paid), "ND-07", now)) is fires


def test_payout_warning_levels_then_lapsed() -> None:
    received = at(2025, 9, 1)
    due = due_after_days(received, 30)
    b = payout_case(received, None)
    assert hits(b, "ND-07", due.at - 31 * DAY_MS) == []
    for offset, level in ((30, "T-30d"), (8, "T-30d"), (7, "T-7d"), (1, "T-1d")):
        (f,) = hits(b, "ND-07", due.at - offset * DAY_MS)
        assert f.kind == "warning" and dict(f.detail)["level"] == level and f.due == due.at
    (f,) = hits(b, "ND-07", due.at)
    assert f.kind == "violation" and dict(f.detail)["status"] == "lapsed"


def test_payout_warning_in_uncovered_year_is_provisional() -> None:
    received = at(2026, 12, 20)
    (f,) = hits(payout_case(received, None), "ND-07", at(2027, 1, 10))
    assert f.kind == "warning" and f.provisional


def seizure_case(expires: int) -> Book:
    b = compliant()
    b.add("SEIZURE", 20, asset_id="ACC1", asset_type="DEPOSIT", asset_class="right",
          measure="冻结", expires_at=expires, officers=[O1], party=D1)
    return b


def test_seizure_expiry_warnings_and_lapse() -> None:
    # rulebook §2: T-30d, T-7d, T-1d and OVERDUE; 民诉解释 §485 renewal before expiry.
    expires = at(2025, 9, 19)  # a Friday
    due = due_on(expires)
    b = seizure_case(expires)
    levels = [dict(f.detail).get("level") for t in (31, 30, 7, 1)
              for f in hits(b, "ZB-34", due.at - t * DAY_MS)]
    assert levels == ["T-30d", "T-7d", "T-1d"]
    (f,) = hits(b, "ZB-34", due.at + 1)
    assert f.kind == "violation" and f.due == due.at


def test_seizure_renewed_the_day_before_or_on_the_day_is_silent_after_is_not() -> None:
    expires = at(2025, 9, 19)
    for renewed, fires in ((at(2025, 9, 18), False), (at(2025, 9, 19, 16), False),
                           (at(2025, 9, 20), True)):
        b = seizure_case(expires)
        b.add("SEIZURE_RENEWED", 0, asset_id="ACC1", expires_at=at(2026, 9, 18),
              previous_expires_at=expires).at = renewed
        found = [f for f in hits(b, "ZB-34", at(2025, 10, 1)) if f.kind == "violation"]
        assert bool(found) is fires


def test_seizure_expiry_on_a_holiday_rolls() -> None:
    b = seizure_case(at(2025, 10, 3))  # holiday → the period ends 10-09
    b.add("SEIZURE_RENEWED", 0, asset_id="ACC1", expires_at=at(2026, 10, 3)).at = at(2025, 10, 9)
    assert [f for f in hits(b, "ZB-34", at(2025, 10, 20)) if f.kind == "violation"] == []


def test_six_month_limit_boundary_and_warnings() -> None:
    # 期限规定 §1: closed within six months; filed 2025-03-03 → 2025-09-03 (a Wednesday).
    b = compliant()
    for n, fires in ((183, False), (184, False), (185, True)):
        move("CASE_CLOSED", n)(b)
        assert bool(hits(b, "ND-04", day(400))) is fires, n
    b.drop("CASE_CLOSED")
    for now, kind in ((day(150), None), (day(160), "warning"), (day(185), "violation")):
        found = hits(b, "ND-04", now)
        assert (found[0].kind if found else None) == kind


def test_six_month_limit_excludes_suspension_and_honours_extension() -> None:
    b = compliant()
    b.add("SUSPENDED", 50, doc_no="（2025）吉0102执1203号之五", reason="异议")
    b.add("SUSPENSION_ENDED", 60, doc_no="（2025）吉0102执1203号之六", reason="驳回")
    move("CASE_CLOSED", 195)(b)  # 09-14: ten suspended days → 09-13 (Sat) → 09-15
    assert hits(b, "ND-04", day(400)) == []
    c = compliant()
    c.add("EXTENSION_APPROVED", 170, approver="P1", new_deadline=day(260))
    move("CASE_CLOSED", 250)(c)
    assert hits(c, "ND-04", day(400)) == []


def with_queries(b: Book, *windows: tuple[int, float]) -> Book:
    for k, n in windows:
        b.add("POST_CLOSURE_QUERY", n, window=k, result="NONE", assets=[], batch_id=f"P{k}")
        b.add("APPLICANT_NOTIFIED", n + 1, window=k, topic="post_closure_query_result",
              party=A1)
    return b


def test_post_closure_windows() -> None:
    # events.md ZB-31: six-month windows from service (2025-06-18); due once ended.
    b = with_queries(compliant(), (0, 200))
    assert hits(b, "ZB-31", day(400)) == []  # window 2 ends 2026-06-18
    warn = hits(b, "ZB-31", day(450))
    assert {f.kind for f in warn} == {"warning"} and len(warn) == 2  # query and notice
    late = hits(b, "ZB-31", day(500))
    assert {f.kind for f in late} == {"violation"} and len(late) == 2
    assert all(dict(f.detail)["window"] == 1 for f in late)


def test_resumption_stops_post_closure_duty_and_links_the_new_case() -> None:
    # events.md: a resumed (执恢) case names the original in prior_case_no; the duty stops.
    new_case = "（2025）吉0102执恢88号"
    b = with_queries(compliant(), (0, 200))
    b.add("RESUMED", 300, new_case_no=new_case, trigger="application", basis="新线索")
    assert hits(b, "ZB-31", day(900)) == []
    r = b.add("CASE_FILED", 301, case_type="执恢", prior_case_no=CASE,
              debtors=[{"kind": "natural", "party": D1}], applicants=[{"party": A1}])
    r.case = new_case
    ruling = b.add("ZB_RULING_ISSUED", 420, doc_no="（2025）吉0102执恢88号之一")
    ruling.case = new_case
    (f,) = hits(b, "ZB-37", day(430))
    assert f.case == new_case and f.severity == "INFO"
    original_ruling = next(e for e in b.events if e.type == "ZB_RULING_ISSUED" and e.case == CASE)
    assert b.record_of(original_ruling).entry_id in {i for i, _ in f.entries}
    seized = b.add("SEIZURE", 350, asset_id="CAR2", asset_class="movable", measure="查封",
                   asset_type="VEHICLE", physically_seized=False)
    seized.case = new_case
    assert hits(b, "ZB-37", day(430)) == []


def test_zb36_two_fruitless_queries_advise_delisting() -> None:
    b = with_queries(compliant(), (0, 200), (1, 380))
    assert hits(b, "ZB-36", day(400)) == []  # not listed
    b.add("DISHONEST_LISTED", 30, party=D1, decision_no="S1", period_months=24)
    (f,) = hits(b, "ZB-36", day(400))
    assert f.severity == "INFO"


def test_found_property_after_closure_warns_then_lapses() -> None:
    b = compliant()
    b.add("POST_CLOSURE_QUERY", 200, window=0, result="FOUND", assets=[{"asset_id": "C9"}])
    due = due_after_days(day(200), 30)
    assert [f.kind for f in hits(b, "ZB-32", day(205))] == ["warning"]
    assert [f.kind for f in hits(b, "ZB-32", due.at)] == ["violation"]
    b.add("CONTROL_MEASURE", 220, asset_id="C9", measure="查封", basis="终本后发现")
    assert hits(b, "ZB-32", due.at) == []


def test_caseno_of_base_case() -> None:
    assert CASE.startswith("（2025）")
