"""The rule book as code: one small pure check per rule (domain/rulebook.md §1, events.md).

Each check reads one case's corrected view and the :class:`~verifier.policy.Context` and yields
hits; the engine turns hits into findings. Where the rule book is loose, events.md ("How the
rules read time") decides, and the reading is cited at the check. Citations keep the rule
book's trust marks (✔ read in a source, ◐ second-hand, ○ from memory); every ○ limit is read
from :class:`~verifier.config.InspectConfig`.

Groups:
- ZB-01 … ZB-23: conditions for 终本, judged at the moment of ``ZB_RULING_ISSUED``: only
  events that occurred before it count (events.md). Silent for cases without a ruling.
- ZB-30 … ZB-37: duties after closing; ND-01 … ND-08 and EV-01: flow-node rules for all cases.
- LATE-01, LATE-02, CASENO-01: the ledger's own checks.
"""

# ruff: noqa: B023 - predicates are called at once, inside the loop that binds their names
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from verifier.cases import Event
from verifier.periods import (
    DAY_MS,
    Due,
    add_months,
    beijing_date,
    day_end,
    due_after_days,
    due_after_months,
    due_on,
    more_than_months,
    roll_to_workday,
)
from verifier.policy import AllOf, AnyOf, CaseView, Check, Context, Hit, Rule

__all__ = ["RULES", "RULES_BY_ID", "Rule", "iter_rules", "rule_ids"]

RULES: list[Rule] = []


def rule(rule_id: str, citation: str, severity: str, zh: str, en: str,
         *, warns: bool = False) -> Callable[[Check], Check]:
    """Register a check as a :class:`Rule` of the catalogue."""

    def wrap(fn: Check) -> Check:
        RULES.append(Rule(rule_id, citation, severity, zh, en, fn, warns))
        return fn

    return wrap


def short(party: Any) -> str:
    """A party hash shortened for messages."""
    return str(party)[:8] if party else "?"


def for_party(party: str) -> Any:
    """A predicate: the event concerns ``party``."""
    return lambda e: e.party == party


def _ruled(case: CaseView) -> tuple[Event, int] | None:
    r = case.ruling
    return (r, r.occurred_at) if r is not None else None


# --------------------------------------------------------------------------------------------
# 1a. Conditions for closing by 终本 (终本规定 §1–§5; 民诉解释 §517)

@rule("ZB-01", "终本规定 §1(4) ✔; 民诉法 §85 ✔", "CRIT",
      "自执行案件立案之日起未超过三个月即终本", "Closed by 终本 within three months of filing")
def zb01(case: CaseView, ctx: Context) -> Iterator[Hit]:
    # events.md: the Beijing date of ZB_RULING_ISSUED is later than the filing date plus three
    # months; no holiday roll for a "more than" condition.
    r, filed = case.ruling, case.filed
    if r is None or filed is None:
        return
    if not more_than_months(filed.occurred_at, ctx.config.zb_min_months, r.occurred_at):
        earliest = add_months(beijing_date(filed.occurred_at), ctx.config.zb_min_months)
        yield Hit([filed, r], zh=f"最早可终本日为{earliest}之后",
                  en=f"earliest permitted after {earliest}")


@rule("ZB-02", "终本规定 §1(1) ✔", "CRIT",
      "未向被执行人发出执行通知", "No execution notice was issued to a debtor")
def zb02(case: CaseView, ctx: Context) -> Iterator[Hit]:
    # events.md: per-debtor duties apply to every debtor in CASE_FILED.debtors, matched by party.
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for party in case.debtor_parties():
        if case.first("EXEC_NOTICE_ISSUED", before=t, where=for_party(party)) is None:
            yield Hit([case.filed or r, r], zh=f"被执行人{short(party)}",
                      en=f"debtor {short(party)}", detail={"party": party})


@rule("ZB-03", "终本规定 §2(1) ✔; 财产调查规定 §3 ✔", "CRIT",
      "未向被执行人发出报告财产令", "No property-report order was issued to a debtor")
def zb03(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for party in case.debtor_parties():
        order = case.first("PROPERTY_REPORT_ORDER_ISSUED", before=t, where=for_party(party))
        if order is None:
            yield Hit([case.filed or r, r], zh=f"被执行人{short(party)}",
                      en=f"debtor {short(party)}", detail={"party": party})
            continue
        notice = case.first("EXEC_NOTICE_ISSUED", before=t, where=for_party(party))
        # Rule book: "Warn if its date ≠ the notice date" (money claims: issued together).
        if notice is not None and beijing_date(notice.occurred_at) != beijing_date(
                order.occurred_at):
            yield Hit([notice, order], severity="MED",
                      zh=f"报告财产令未与执行通知同时发出（被执行人{short(party)}）",
                      en=f"order not issued with the notice (debtor {short(party)})",
                      detail={"party": party})


@rule("ZB-04", "终本规定 §2(2) ✔; 财产调查规定 §8 ✔", "HIGH",
      "被执行人报告的财产情况未予核查", "A property report was not verified")
def zb04(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for sub in case.of("PROPERTY_REPORT_SUBMITTED", before=t):
        ok = case.first("PROPERTY_REPORT_VERIFIED", before=t, where=lambda e, s=sub: (
            e.party == s.party and e.occurred_at >= s.occurred_at))
        if ok is None:
            yield Hit([sub, r])


SANCTIONS = ("FINE", "DETENTION", "CRIMINAL_REFERRAL")
REPORT_BREACHES = ("PROPERTY_REPORT_OVERDUE", "PROPERTY_REPORT_REFUSED", "PROPERTY_REPORT_FALSE")


@rule("ZB-05", "终本规定 §2(3) ✔; 财产调查规定 §9–10 ✔", "HIGH",
      "逾期、拒绝或虚假报告财产未依法处罚或纳入失信名单",
      "An overdue, refused or false property report was not sanctioned")
def zb05(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for trig in case.of(*REPORT_BREACHES, before=t):
        sanction = case.first(*SANCTIONS, before=t)
        listed = case.first("DISHONEST_LISTED", before=t, where=for_party(trig.party))
        missing = [n for n, e in (("罚款/拘留/刑事追究", sanction), ("纳入失信", listed))
                   if e is None]
        if missing:
            yield Hit([trig, r], zh="缺少" + "、".join(missing),
                      en="missing " + " and ".join(
                          "a fine, detention or referral" if m.startswith("罚") else "a listing"
                          for m in missing))


@rule("ZB-06", "终本规定 §1(2) ✔", "CRIT",
      "未向被执行人发出限制消费令（或终本前已解除）",
      "No consumption restriction in force for a debtor at the ruling")
def zb06(case: CaseView, ctx: Context) -> Iterator[Hit]:
    # events.md: each debtor has a CONSUMPTION_RESTRICTED before the ruling not lifted before it.
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for party in case.debtor_parties():
        active = False
        lifted: Event | None = None
        for e in case.of("CONSUMPTION_RESTRICTED", "CONSUMPTION_RESTRICTION_LIFTED", before=t):
            if e.party != party:
                continue
            if e.type == "CONSUMPTION_RESTRICTED":
                active, lifted = True, None
            else:
                active, lifted = False, e
        if not active:
            cites: list[Any] = [case.filed or r, r] + ([lifted] if lifted else [])
            yield Hit(cites, zh=f"被执行人{short(party)}", en=f"debtor {short(party)}",
                      detail={"party": party})


ZB07_TRIGGERS = ("PROPERTY_REPORT_REFUSED", "PROPERTY_REPORT_OVERDUE", "PROPERTY_REPORT_FALSE",
                 "OBSTRUCTION_FLAGGED", "CONCEALMENT_FLAGGED")


@rule("ZB-07", "终本规定 §1(2) ✔; 失信规定 §1 ◐", "HIGH",
      "符合条件的被执行人未纳入失信被执行人名单",
      "A debtor who qualifies was not put on the dishonest-debtor list")
def zb07(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    seen: set[Any] = set()
    for trig in case.of(*ZB07_TRIGGERS, before=t):
        if trig.party in seen:
            continue
        seen.add(trig.party)
        if case.first("DISHONEST_LISTED", before=t, where=for_party(trig.party)) is None:
            yield Hit([trig, r], zh=f"被执行人{short(trig.party)}",
                      en=f"debtor {short(trig.party)}")


@rule("ZB-08", "终本规定 §3(1) ○; 财产调查规定 §2 ✔", "CRIT",
      "财产线索未核查", "A property lead was not verified")
def zb08(case: CaseView, ctx: Context) -> Iterator[Hit]:
    rr = _ruled(case)
    for clue in case.of("CLUE_SUBMITTED"):
        cid = clue.get("clue_id")
        verified = case.first("CLUE_VERIFIED", where=lambda e, c=cid: e.get("clue_id") == c)
        if rr is not None and clue.occurred_at < rr[1]:
            if verified is None or verified.occurred_at >= rr[1]:
                yield Hit([clue, rr[0]], zh="终本前未核查", en="not verified before the ruling")
                continue
        if verified is not None:
            days = (ctx.config.clue_verify_urgent_days if clue.get("urgent")
                    else ctx.config.clue_verify_days)
            due = due_after_days(clue.occurred_at, days)
            if verified.occurred_at >= due.at:
                # Rule book: "MED if verification took more than 7 days (3 if urgent)".
                yield Hit([clue, verified], severity="MED", due=due.at,
                          provisional=due.provisional,
                          zh=f"核查超过{days}日", en=f"verified after more than {days} days")


@rule("ZB-09", "终本规定 §3(2) ○; 江陵 rule (5) ◐", "CRIT",
      "网络查控未覆盖存款、车辆、不动产、有价证券或反馈未完成",
      "Network inquiry missing a required category, or feedback still pending")
def zb09(case: CaseView, ctx: Context) -> Iterator[Hit]:
    # events.md: per debtor, each required category has a final (not PENDING) feedback.
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for party in case.debtor_parties():
        fbs = [e for e in case.of("NET_INQUIRY_FEEDBACK", before=t) if e.party == party]
        for cat in ctx.config.required_inquiry_categories:
            mine = [e for e in fbs if e.get("category") == cat]
            if not any(e.get("status") != "PENDING" for e in mine):
                pending = [e for e in mine if e.get("status") == "PENDING"]
                yield Hit(pending + [r], zh=f"被执行人{short(party)}：{cat}"
                          + ("反馈未完成" if pending else "未查询"),
                          en=f"debtor {short(party)}: {cat} "
                          + ("still pending" if pending else "not queried"),
                          detail={"party": party, "category": cat})


@rule("ZB-10", "终本规定 §3(3) ○", "HIGH",
      "网络无法查询的财产未进行线下调查",
      "A category not answerable online was not investigated offline")
def zb10(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for fb in case.of("NET_INQUIRY_FEEDBACK", before=t):
        if fb.get("status") not in ("UNSUPPORTED", "FAILED"):
            continue
        cat = fb.get("category")
        offline = case.first("OFFLINE_INQUIRY", before=t,
                             where=lambda e: e.party == fb.party and e.get("category") == cat)
        site = case.first("SITE_INVESTIGATION", before=t, where=for_party(fb.party))
        if offline is None and site is None:
            yield Hit([fb, r], zh=f"{cat}", en=f"{cat}")


@rule("ZB-11", "终本规定 §3(4) ○; 财产调查规定 §14 ✔", "MED",
      "被执行人隐匿财产未依法搜查", "Concealment flagged but no search")
def zb11(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for flag in case.of("CONCEALMENT_FLAGGED", before=t):
        if case.first("SEARCH", before=t, where=lambda e, f=flag: (
                f.party is None or e.party in (None, f.party))) is None:
            yield Hit([flag, r])


@rule("ZB-12", "终本规定 §3(5) ○; 财产调查规定 §17, §21 ✔", "MED",
      "审计调查或悬赏公告申请未依法处理", "An audit or reward application was not acted on")
def zb12(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    granted = set(ctx.config.granted_decisions)
    for applied_t, decided_t, done_t, key in (
            ("AUDIT_APPLIED", "AUDIT_DECIDED", "AUDIT_DONE", "audit_id"),
            ("REWARD_APPLIED", "REWARD_DECIDED", "REWARD_PUBLISHED", "reward_id")):
        for app in case.of(applied_t, before=t):
            k = app.get(key)
            decided = case.first(decided_t, before=t, where=lambda e, k=k: e.get(key) == k)
            due = due_after_days(app.occurred_at, ctx.config.audit_reward_decision_days)
            if decided is None or decided.occurred_at >= due.at:
                yield Hit([app, r] + ([decided] if decided else []), due=due.at,
                          provisional=due.provisional, zh="未在十日内作出决定",
                          en="no decision within 10 days")
                continue
            if decided.get("decision") in granted and case.first(
                    done_t, before=t, where=lambda e, k=k: e.get(key) == k) is None:
                yield Hit([app, decided, r], zh="准许后未实施", en="granted but not carried out")


DISPOSED = ("AUCTION_RESULT", "ACCEPT_IN_KIND_ACCEPTED")


def _asset_ids(fb: Event) -> list[str]:
    out = []
    for a in fb.get("assets", []) or []:
        if isinstance(a, Mapping) and isinstance(a.get("asset_id"), str):
            out.append(a["asset_id"])
    return out


@rule("ZB-13", "终本规定 §1(3) ✔, §4 ◐; 江陵 (6)(7) ◐", "CRIT",
      "尚有可供执行或处置的财产", "Property that could still be enforced remains")
def zb13(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    found: dict[str, Event] = {}
    for fb in case.of("NET_INQUIRY_FEEDBACK", "OFFLINE_INQUIRY", before=t):
        if fb.get("status") == "FOUND":
            for aid in _asset_ids(fb):
                found.setdefault(aid, fb)
    seizures = {e.get("asset_id"): e for e in case.of("SEIZURE", before=t)}
    for aid, s in seizures.items():
        found.setdefault(aid, s)
    for aid, src in found.items():
        seizure = seizures.get(aid)
        if seizure is None:
            yield Hit([src, r], zh=f"财产{aid}已发现未控制", en=f"asset {aid} found, not seized")
            continue

        def on(e: Event, a: Any = aid) -> bool:
            return bool(e.get("asset_id") == a)

        sold = case.first("AUCTION_RESULT", before=t,
                          where=lambda e, a=aid: on(e) and e.get("result") == "SOLD")
        if sold or case.first("ACCEPT_IN_KIND_ACCEPTED", before=t, where=on):
            continue
        if seizure.get("measure") in ("扣划", "提取收入"):
            continue  # money taken directly is disposed of by the measure itself
        if case.first("SEIZURE_RELEASED", "SEIZURE_LAPSED", before=t, where=on):
            continue  # released or lapsed: ZB-33/ZB-34 speak to that
        unsold = case.first("AUCTION_RESULT", before=t,
                            where=lambda e, a=aid: on(e) and e.get("result") == "UNSOLD")
        declined = case.first("ACCEPT_IN_KIND_DECLINED", before=t,
                              where=lambda e, a=aid: on(e)
                              and e.get("forced_management_possible") is False)
        if unsold and declined:
            continue  # (b) failed at auction, in kind declined, no management possible
        if (seizure.get("asset_type") in ("VEHICLE", "VESSEL")
                and seizure.get("physically_seized") is False):
            continue  # (c) registered but not physically taken
        yield Hit([seizure, r], zh=f"财产{aid}未处置", en=f"asset {aid} not disposed of")


@rule("ZB-14", "江陵 rule (7) ◐", "CRIT",
      "有财产正在处置中即终本", "Closed while a disposal was in progress")
def zb14(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for ann in case.of("AUCTION_ANNOUNCED", before=t):
        res = case.first("AUCTION_RESULT", before=t, where=lambda e, a=ann: e.get(
            "asset_id") == a.get("asset_id") and e.get("round") == a.get("round"))
        if res is None:
            yield Hit([ann, r], zh="拍卖无结果", en="auction without a result")
    for val in case.of("VALUATION_STARTED", before=t):
        rep = case.first("VALUATION_REPORTED", before=t,
                         where=lambda e, v=val: e.get("asset_id") == v.get("asset_id"))
        if rep is None:
            yield Hit([val, r], zh="评估未出报告", en="valuation without a report")


@rule("ZB-15", "终本规定 §1(5) ✔", "HIGH",
      "被执行人下落不明未依法查找", "A missing debtor was not searched for")
def zb15(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for flag in case.of("DEBTOR_MISSING_FLAGGED", before=t):
        if case.first("MISSING_DEBTOR_SEARCH", before=t, where=for_party(flag.party)) is None:
            yield Hit([flag, r])


@rule("ZB-16", "终本规定 §1(5) ✔", "HIGH",
      "妨害执行未采取强制措施", "Obstruction was not met with coercive measures")
def zb16(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for flag in case.of("OBSTRUCTION_FLAGGED", before=t):
        if case.first(*SANCTIONS, before=t) is None:
            yield Hit([flag, r])


@rule("ZB-17", "江陵 rule (4) ◐ (local practice)", "MED",
      "未对被执行人或其法定代表人进行调查询问",
      "The debtor or its legal representative was not questioned")
def zb17(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    for party in case.debtor_parties():
        if case.first("INTERROGATION", "DEBTOR_MISSING_FLAGGED", before=t,
                      where=for_party(party)) is None:
            yield Hit([case.filed or r, r], zh=f"被执行人{short(party)}",
                      en=f"debtor {short(party)}", detail={"party": party})


INTERVIEW_FLAGS = ("informed_execution", "informed_measures", "informed_property",
                   "informed_basis_and_consequences")


@rule("ZB-18", "终本规定 §5 ◐", "CRIT",
      "终本前未告知申请执行人并听取意见", "The applicant was not informed and heard before 终本")
def zb18(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    r, t = rr
    full = case.first("APPLICANT_INTERVIEW", before=t, where=lambda e: all(
        e.get(f) is True for f in INTERVIEW_FLAGS) and bool(e.get("record_sha256")))
    if full is None:
        partial = case.first("APPLICANT_INTERVIEW", before=t)
        yield Hit(([partial] if partial else []) + [r],
                  zh="告知内容不全或无记录" if partial else "无约谈",
                  en="incomplete or unrecorded" if partial else "no interview")
        return
    if case.first("APPLICANT_OPINION", before=t,
                  where=lambda e: e.occurred_at >= full.occurred_at) is None:
        yield Hit([full, r], zh="未记录申请执行人意见", en="no opinion recorded")


def _signed_consent(case: CaseView, ctx: Context) -> bool:
    t = case.ruling.occurred_at if case.ruling else 0
    return case.first("APPLICANT_OPINION", before=t,
                      where=lambda e: e.get("signed_consent") is True) is not None


def _has(etype: str) -> Any:
    def pred(case: CaseView, ctx: Context) -> bool:
        t = case.ruling.occurred_at if case.ruling else 0
        return case.first(etype, before=t) is not None
    return pred


#: 民诉解释 §517: signed consent, or a collegial review approved by the president.
ZB19_POLICY = AnyOf((_signed_consent, AllOf((_has("COLLEGIAL_REVIEW"),
                                             _has("PRESIDENT_APPROVAL")))))


@rule("ZB-19", "民诉解释 §517 ✔", "HIGH",
      "申请执行人未签字确认，且未经合议庭审查并经院长批准",
      "Neither the applicant's signed consent nor a collegial review with president's approval")
def zb19(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    if not ZB19_POLICY(case, ctx):
        yield Hit([rr[0]])


RULING_FLAGS = ("contains_claim", "contains_process", "contains_property", "contains_realized",
                "contains_rights")


@rule("ZB-20", "终本规定 §6 ○", "HIGH",
      "终本裁定书载明事项不全", "The ruling lacks required contents")
def zb20(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    missing = [f for f in RULING_FLAGS if rr[0].get(f) is not True]
    if missing:
        yield Hit([rr[0]], zh="缺少" + "、".join(missing), en="missing " + ", ".join(missing))


@rule("ZB-21", "终本规定 §6 ○; 立结案意见 §16 ○", "CRIT",
      "终本裁定书送达申请执行人前即结案", "Closed before the ruling was served on the applicant")
def zb21(case: CaseView, ctx: Context) -> Iterator[Hit]:
    # events.md: ZB-21 compares the applicant's ZB_RULING_SERVED with CASE_CLOSED.
    closed = case.closed_by_zb()
    if closed is None:
        return
    served = case.applicant_service()
    if served is None:
        yield Hit([closed], zh="未送达", en="never served")
        return
    at = served.get("served_at", served.occurred_at)
    if not isinstance(at, int):
        at = served.occurred_at
    if beijing_date(at) > beijing_date(closed.occurred_at):
        yield Hit([served, closed], zh="送达晚于结案", en="served after closing")


@rule("ZB-22", "终本规定 §6 ○", "MED",
      "终本裁定书未依法公开", "The ruling was not published online")
def zb22(case: CaseView, ctx: Context) -> Iterator[Hit]:
    closed = case.closed_by_zb()
    if closed is None or case.ruling is None:
        return
    if case.first("RULING_PUBLISHED", where=lambda e: e.get("published") is True
                  or bool(e.get("not_published_reason"))) is None:
        yield Hit([case.ruling, closed])


@rule("ZB-23", "终本规定 §11 ○", "INFO",
      "被执行人为法人，符合条件的应移送破产审查（提示）",
      "A legal-person debtor: consider a bankruptcy referral (advisory)")
def zb23(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if (rr := _ruled(case)) is None:
        return
    kinds = set(ctx.config.legal_person_kinds)
    if any(d.get("kind") in kinds for d in case.debtors()) and case.first(
            "BANKRUPTCY_REFERRED") is None:
        yield Hit([case.filed or rr[0], rr[0]])


# --------------------------------------------------------------------------------------------
# 1b. Duties after closing

def _service_time(case: CaseView) -> tuple[Event, int] | None:
    """T for the post-closure duties: the applicant's service of a ruling of a closed case."""
    if case.closed_by_zb() is None and case.ruling is None:
        return None
    served = case.applicant_service()
    if served is None:
        return None
    at = served.get("served_at", served.occurred_at)
    return served, at if isinstance(at, int) else served.occurred_at


@rule("ZB-30", "终本规定 §12 ○", "MED",
      "终本裁定送达后七日内未录入终本案件信息库",
      "Not entered in the 终本 database within 7 days of service")
def zb30(case: CaseView, ctx: Context) -> Iterator[Hit]:
    st = _service_time(case)
    if st is None:
        return
    served, at = st
    due = due_after_days(at, ctx.config.zb_db_entry_days)
    hit = ctx.duty(False, due, case.first("ZB_DB_ENTERED"), [served])
    if hit:
        yield hit


@rule("ZB-31", "终本规定 §9 ✔", "HIGH",
      "终本后未按每六个月查询被执行人财产并告知申请执行人",
      "A six-monthly post-closure query or its notice to the applicant is missing", warns=True)
def zb31(case: CaseView, ctx: Context) -> Iterator[Hit]:
    # events.md: ten windows of six months from the service date; a window is due once it has
    # ended by the inspection time; the duty stops once the case is resumed.
    st = _service_time(case)
    if st is None:
        return
    served, at = st
    # The duty stops once the case is resumed (events.md), or once it is paid or finally
    # terminated after the 终本 (执行完毕 / 终结执行: it leaves the 终本 database, ZB-35).
    resumed = case.first("RESUMED", "CASE_CLOSED", where=lambda e: e.type == "RESUMED" or (
        e.get("mode") in ("执行完毕", "终结执行", "销案") and e.occurred_at >= at))
    months = ctx.config.post_query_window_months
    for k in range(ctx.config.post_query_windows):
        start = day_end(add_months(beijing_date(at), months * k)) if k else at
        due = due_after_months(at, months * (k + 1))
        if resumed is not None and resumed.occurred_at < due.at:
            return
        if start > ctx.now:
            ctx.wake(start)
            return

        def in_window(e: Event, k: int = k, start: int = start, end: int = due.at) -> bool:
            w = e.get("window")
            if isinstance(w, int) and not isinstance(w, bool):
                return w == k
            return start <= e.occurred_at < end

        query = case.first("POST_CLOSURE_QUERY", where=in_window)
        notice = case.first("APPLICANT_NOTIFIED", where=lambda e, f=in_window: e.get(
            "topic") == "post_closure_query_result" and f(e))
        for what_zh, what_en, done in (("查询", "query", query), ("告知", "notice", notice)):
            hit = ctx.duty(True, due, done, [served], zh=f"第{k + 1}期{what_zh}",
                           en=f"window {k + 1} {what_en}")
            if hit:
                hit.detail["window"] = k
                yield hit


def _found(e: Event) -> bool:
    return e.get("result") == "FOUND" or bool(e.get("assets"))


@rule("ZB-32", "终本规定 §9 ✔, §10 ○", "HIGH",
      "终本后发现财产未及时恢复执行或采取控制措施",
      "Property found after closure but no control measure or resumption in time", warns=True)
def zb32(case: CaseView, ctx: Context) -> Iterator[Hit]:
    for q in case.of("POST_CLOSURE_QUERY"):
        if not _found(q):
            continue
        due = due_after_days(q.occurred_at, ctx.config.resume_after_found_days)
        done = case.first("CONTROL_MEASURE", "RESUMED",
                          where=lambda e, q=q: e.occurred_at >= q.occurred_at)
        hit = ctx.duty(True, due, done, [q])
        if hit:
            yield hit


@rule("ZB-33", "终本规定 §15 ○", "HIGH",
      "以终本为由解除已采取的执行措施", "A measure was lifted because of 终本")
def zb33(case: CaseView, ctx: Context) -> Iterator[Hit]:
    reasons = ctx.config.zb_reasons
    for e in case.of("CONSUMPTION_RESTRICTION_LIFTED", "DISHONEST_DELISTED", "SEIZURE_RELEASED"):
        reason = str(e.get("reason", ""))
        if any(r in reason for r in reasons):
            yield Hit([e], zh=e.type, en=e.type)


def seizure_limit_months(s: Event, ctx: Context) -> int:
    """民诉解释 §485 ✔: deposits 1 year, movables 2 years, real estate and rights 3 years."""
    if s.get("asset_type") in ("DEPOSIT",):
        return ctx.config.deposit_freeze_months
    if s.get("asset_class") == "movable":
        return ctx.config.movable_seizure_months
    return ctx.config.other_seizure_months


ENDS_SEIZURE = ("SEIZURE_RELEASED", "ACCEPT_IN_KIND_ACCEPTED")


def _seizure_ended(case: CaseView, aid: Any, before: int) -> Event | None:
    return case.first("SEIZURE_RELEASED", "ACCEPT_IN_KIND_ACCEPTED", "AUCTION_RESULT",
                      before=before, where=lambda e: e.get("asset_id") == aid and (
                          e.type != "AUCTION_RESULT" or e.get("result") == "SOLD"))


@rule("ZB-34", "终本规定 §16 ○; 民诉解释 §485 ✔; 查封规定 §27 ✔", "HIGH",
      "查封、扣押、冻结期限届满前未办理续行", "A seizure was not renewed before it expired",
      warns=True)
def zb34(case: CaseView, ctx: Context) -> Iterator[Hit]:
    for s in case.of("SEIZURE"):
        if s.get("measure") in ("扣划", "提取收入"):
            continue  # money taken, nothing stays frozen
        aid = s.get("asset_id")
        exp = s.get("expires_at")
        if isinstance(exp, int) and not isinstance(exp, bool):
            due = due_on(exp)
        else:
            due = due_after_months(s.get("start_at", s.occurred_at) if isinstance(
                s.get("start_at"), int) else s.occurred_at, seizure_limit_months(s, ctx))
        cites: list[Any] = [s]
        renewals = [e for e in case.of("SEIZURE_RENEWED")
                    if e.get("asset_id") == aid and e.occurred_at >= s.occurred_at]
        stopped = False
        for ren in renewals:
            ended = _seizure_ended(case, aid, due.at)
            if ended is not None and ended.occurred_at < ren.occurred_at:
                break
            if ren.occurred_at >= due.at:
                yield Hit([*cites, ren], due=due.at, provisional=due.provisional,
                          zh="期限届满后才续行", en="renewed only after expiry",
                          detail={"asset_id": aid})
            cites = [s, ren]
            nxt = ren.get("expires_at")
            if not isinstance(nxt, int) or isinstance(nxt, bool):
                stopped = True
                break
            due = due_on(nxt)
        if stopped:
            continue
        ended = _seizure_ended(case, aid, due.at)
        if ended is not None:
            continue
        lapsed = case.first("SEIZURE_LAPSED", where=lambda e: e.get("asset_id") == aid)
        if lapsed is not None and lapsed.occurred_at < due.at:
            continue  # a recorded decision to let it lapse
        hit = ctx.duty(True, due, None, [*cites, *([lapsed] if lapsed else [])],
                       zh=f"财产{aid}", en=f"asset {aid}")
        if hit:
            hit.detail["asset_id"] = aid
            yield hit


@rule("ZB-35", "终本规定 §18 ○", "INFO",
      "执行完毕或终结执行后三日内未从终本库屏蔽",
      "Not masked in the 终本 database within 3 days of final payment or termination")
def zb35(case: CaseView, ctx: Context) -> Iterator[Hit]:
    entered = case.first("ZB_DB_ENTERED")
    if entered is None:
        return
    trig = case.first("CASE_CLOSED", where=lambda e: e.get("mode") in ("执行完毕", "终结执行")
                      and e.occurred_at >= entered.occurred_at)
    if trig is None:
        return
    due = due_after_days(trig.occurred_at, ctx.config.zb_db_mask_days)
    hit = ctx.duty(False, due, case.first("ZB_DB_MASKED"), [entered, trig])
    if hit:
        yield hit


@rule("ZB-36", "失信规定(2017) §10(4) ◐", "INFO",
      "终本后两次以上查询未发现财产，可删除失信信息（提示）",
      "Two or more fruitless post-closure queries: delisting is permitted (advisory)")
def zb36(case: CaseView, ctx: Context) -> Iterator[Hit]:
    listed = case.of("DISHONEST_LISTED")
    if not listed or case.first("DISHONEST_DELISTED") is not None:
        return
    fruitless = [q for q in case.of("POST_CLOSURE_QUERY") if not _found(q)]
    if len(fruitless) >= ctx.config.delist_after_fruitless_queries and not any(
            _found(q) for q in case.of("POST_CLOSURE_QUERY")):
        yield Hit([listed[0]] + fruitless[: ctx.config.delist_after_fruitless_queries])


NEW_MEASURES = ("SEIZURE", "CONTROL_MEASURE", "FUNDS_RECEIVED", "AUCTION_ANNOUNCED",
                "VALUATION_STARTED", "FINE", "DETENTION", "CRIMINAL_REFERRAL", "SEARCH",
                "EXIT_RESTRICTED", "DISHONEST_LISTED")


@rule("ZB-37", "SPC guidance of 2024-12-30 ◐", "INFO",
      "恢复执行后无新措施再次终本（反复终本）",
      "终本 again after resumption with no new measure in between (repeated 终本)")
def zb37(case: CaseView, ctx: Context) -> Iterator[Hit]:
    # A resumed (执恢) case names its original in CASE_FILED.prior_case_no (events.md).
    filed, r = case.filed, case.ruling
    if filed is None or r is None:
        return
    prior_no = filed.get("prior_case_no")
    if not isinstance(prior_no, str) or not prior_no:
        return
    prior = ctx.linked(prior_no)
    if prior is None or prior.ruling is None:
        return
    if case.first(*NEW_MEASURES, before=r.occurred_at,
                  where=lambda e: e.occurred_at >= filed.occurred_at) is None:
        yield Hit([prior.ruling, filed, r], zh=f"原案{prior_no}", en=f"original {prior_no}")


# --------------------------------------------------------------------------------------------
# 1c. Flow-node rules

@rule("ND-01", "期限规定 §2 ✔", "MED",
      "立案后七日内未分案", "No handler assigned within 7 days of filing")
def nd01(case: CaseView, ctx: Context) -> Iterator[Hit]:
    filed = case.filed
    if filed is None:
        return
    due = due_after_days(filed.occurred_at, ctx.config.handler_assign_days)
    hit = ctx.duty(False, due, case.first("HANDLER_ASSIGNED"), [filed])
    if hit:
        yield hit


@rule("ND-02", "民诉解释 §480 ✔; 期限规定 §4 ✔", "MED",
      "立案后十日内未发出执行通知", "No execution notice within 10 days of filing")
def nd02(case: CaseView, ctx: Context) -> Iterator[Hit]:
    filed = case.filed
    if filed is None:
        return
    due = due_after_days(filed.occurred_at, ctx.config.exec_notice_days)
    for party in case.debtor_parties():
        done = case.first("EXEC_NOTICE_ISSUED", where=for_party(party))
        hit = ctx.duty(False, due, done, [filed], zh=f"被执行人{short(party)}",
                       en=f"debtor {short(party)}")
        if hit:
            hit.detail["party"] = party
            yield hit


@rule("ND-03", "期限规定 §5 ✔", "MED",
      "分案后三日内未通知申请执行人提供财产线索",
      "The applicant was not asked for leads within 3 days of assignment")
def nd03(case: CaseView, ctx: Context) -> Iterator[Hit]:
    assigned = case.first("HANDLER_ASSIGNED")
    if assigned is None:
        return
    due = due_after_days(assigned.occurred_at, ctx.config.provide_clues_notice_days)
    done = case.first("APPLICANT_NOTIFIED", where=lambda e: e.get("topic") == "provide_clues")
    hit = ctx.duty(False, due, done, [assigned])
    if hit:
        yield hit


def case_limit_due(case: CaseView, ctx: Context) -> tuple[Due, list[Event]] | None:
    """ND-04's due: filing + 6 months (3 non-litigation), plus suspended time, or an extension.

    events.md: ND-04 excludes the time between SUSPENDED and SUSPENSION_ENDED (中止执行).
    None while a suspension is still running (the clock is stopped).
    """
    filed = case.filed
    if filed is None:
        return None
    months = (ctx.config.case_limit_months_non_litigation if filed.get("non_litigation") is True
              else ctx.config.case_limit_months)
    excluded = 0
    cites: list[Event] = [filed]
    open_since: Event | None = None
    for e in case.of("SUSPENDED", "SUSPENSION_ENDED"):
        if e.type == "SUSPENDED" and open_since is None:
            open_since = e
        elif e.type == "SUSPENSION_ENDED" and open_since is not None:
            excluded += (beijing_date(e.occurred_at) - beijing_date(open_since.occurred_at)).days
            cites += [open_since, e]
            open_since = None
    if open_since is not None:
        return None
    import datetime as _dt

    last = add_months(beijing_date(filed.occurred_at), months) + _dt.timedelta(days=excluded)
    last, prov = roll_to_workday(last)
    due = Due(last, day_end(last), prov)
    ext = case.first("EXTENSION_APPROVED", where=lambda e: e.occurred_at < due.at)
    if ext is not None and isinstance(ext.get("new_deadline"), int):
        due = due_on(ext.get("new_deadline"))
        cites.append(ext)
    return due, cites


@rule("ND-04", "期限规定 §1 ✔; 法释〔2000〕29号 §5 ✔", "MED",
      "超过六个月执行期限未结案且未经批准延长",
      "Open beyond the six-month limit without an approved extension", warns=True)
def nd04(case: CaseView, ctx: Context) -> Iterator[Hit]:
    got = case_limit_due(case, ctx)
    if got is None:
        return
    due, cites = got
    hit = ctx.duty(True, due, case.first("CASE_CLOSED"), list(cites))
    if hit:
        yield hit


def _needs_valuation(s: Event) -> bool:
    return s.get("asset_class") == "immovable" or (
        s.get("asset_class") == "movable" and s.get("physically_seized") is True)


@rule("ND-05", "参考价规定 §1, §30 ✔", "MED",
      "查封后三十日内未启动确定参考价或定价后十日内未启动处置",
      "Reference price not started within 30 days of seizure, or disposal not within 10 days")
def nd05(case: CaseView, ctx: Context) -> Iterator[Hit]:
    for s in case.of("SEIZURE"):
        if not _needs_valuation(s):
            continue
        aid = s.get("asset_id")
        due = due_after_days(s.occurred_at, ctx.config.valuation_start_days)
        if case.first("SEIZURE_RELEASED", "SEIZURE_LAPSED", "ACCEPT_IN_KIND_ACCEPTED",
                      before=due.at, where=lambda e, a=aid: e.get("asset_id") == a):
            continue
        done = case.first("VALUATION_STARTED", where=lambda e, a=aid: e.get("asset_id") == a)
        hit = ctx.duty(False, due, done, [s], zh="评估", en="valuation")
        if hit:
            yield hit
    for rep in case.of("VALUATION_REPORTED"):
        aid = rep.get("asset_id")
        due = due_after_days(rep.occurred_at, ctx.config.disposal_start_days)
        if case.first("SEIZURE_RELEASED", "ACCEPT_IN_KIND_ACCEPTED", before=due.at,
                      where=lambda e, a=aid: e.get("asset_id") == a):
            continue
        done = case.first("AUCTION_ANNOUNCED", where=lambda e, a=aid: e.get("asset_id") == a)
        hit = ctx.duty(False, due, done, [rep], zh="处置", en="disposal")
        if hit:
            yield hit


@rule("ND-06", "网拍规定 §26 ✔", "MED",
      "流拍后三十日内未再次拍卖或降价超过百分之二十",
      "No re-auction within 30 days of a failed round, or a price cut above 20%")
def nd06(case: CaseView, ctx: Context) -> Iterator[Hit]:
    for res in case.of("AUCTION_RESULT"):
        rnd = res.get("round")
        if res.get("result") != "UNSOLD" or not isinstance(rnd, int):
            continue
        aid = res.get("asset_id")
        nxt = case.first("AUCTION_ANNOUNCED", where=lambda e, a=aid, r=rnd: e.get(
            "asset_id") == a and e.get("round") == r + 1)
        if rnd < ctx.config.auction_rounds_before_in_kind:
            due = due_after_days(res.occurred_at, ctx.config.reauction_days)
            stop = case.first("ACCEPT_IN_KIND_OFFERED", "ACCEPT_IN_KIND_ACCEPTED",
                              "ACCEPT_IN_KIND_DECLINED", "SEIZURE_RELEASED", before=due.at,
                              where=lambda e, a=aid: e.get("asset_id") == a)
            if stop is None:
                hit = ctx.duty(False, due, nxt, [res], zh="再次拍卖", en="re-auction")
                if hit:
                    yield hit
        prev = case.first("AUCTION_ANNOUNCED", where=lambda e, a=aid, r=rnd: e.get(
            "asset_id") == a and e.get("round") == r)
        if nxt is not None and prev is not None:
            p0, p1 = prev.get("starting_price_fen"), nxt.get("starting_price_fen")
            if isinstance(p0, int) and isinstance(p1, int) and p1 * 100 < p0 * (
                    100 - ctx.config.max_price_cut_percent):
                yield Hit([prev, nxt], zh="降价幅度超过百分之二十", en="price cut above 20%")


@rule("ND-07", "法发〔2017〕6号 ◐", "HIGH",
      "执行款到账后三十日内未发放", "Enforcement money not paid out within 30 days", warns=True)
def nd07(case: CaseView, ctx: Context) -> Iterator[Hit]:
    for rec in case.of("FUNDS_RECEIVED"):
        fid = rec.get("funds_id")
        due = due_after_days(rec.occurred_at, ctx.config.payout_days)
        done = case.first("FUNDS_DISBURSED", where=lambda e, f=fid: e.get("funds_id") == f)
        hit = ctx.duty(True, due, done, [rec])
        if hit:
            hit.detail["funds_id"] = fid
            yield hit


def _physical_movable(s: Event) -> bool:
    return s.get("asset_class") == "movable" and s.get("physically_seized") is not False


@rule("ND-08", "民诉法 §256 ✔", "MED",
      "查封扣押动产无在场人签名的清单或未通知被执行人",
      "A movable seizure without a signed inventory, or the debtor not notified")
def nd08(case: CaseView, ctx: Context) -> Iterator[Hit]:
    for s in case.of("SEIZURE"):
        if not _physical_movable(s):
            continue
        missing = []
        if not s.get("inventory_hash"):
            missing.append(("清单", "inventory"))
        if not s.get("attendees"):
            missing.append(("在场人", "attendees"))
        if s.get("debtor_notified") is False:
            missing.append(("通知被执行人", "debtor notice"))
        if missing:
            yield Hit([s], zh="缺少" + "、".join(m[0] for m in missing),
                      en="missing " + ", ".join(m[1] for m in missing))


EV_TYPES = ("SITE_INVESTIGATION", "SEARCH", "SEIZURE")


@rule("EV-01", "法发〔2022〕16号 (十一) ◐; officers ○", "MED",
      "现场执行行为无上链的现场证据或执法人员不足两人",
      "An on-site operation without anchored evidence, or fewer than two officers")
def ev01(case: CaseView, ctx: Context) -> Iterator[Hit]:
    # events.md: at least one anchored evidence item captured within one hour of occurred_at,
    # with a location, and at least two officers named.
    for e in case.of(*EV_TYPES):
        if e.type == "SEIZURE" and not _physical_movable(e):
            continue
        good = None
        for ref in e.evidence_refs:
            ev = ctx.evidence(ref, case)
            if ev is None:
                continue
            body = ev.payload.get("body", {})
            cap, loc = body.get("captured_at"), body.get("location")
            if (isinstance(cap, int) and abs(cap - e.occurred_at) <= ctx.config.evidence_window_ms
                    and isinstance(loc, Mapping) and isinstance(loc.get("lat_e6"), int)
                    and isinstance(loc.get("lon_e6"), int)):
                good = ev
                break
        officers = e.get("officers") or []
        problems = []
        if good is None:
            problems.append(("无合格现场证据", "no qualifying anchored evidence"))
        if len(set(officers)) < ctx.config.min_officers:
            problems.append(("执法人员不足两人", "fewer than two officers"))
        if problems:
            yield Hit([e], zh="；".join(p[0] for p in problems),
                      en="; ".join(p[1] for p in problems))
        elif good is not None:
            pass


# --------------------------------------------------------------------------------------------
# The ledger's own checks

@rule("LATE-01", "events.md LATE-01 (补录)", "MED",
      "事件补录：上链时间晚于发生时间超过规定时限",
      "Entered late (补录): recorded long after it occurred")
def late01(case: CaseView, ctx: Context) -> Iterator[Hit]:
    for e in case.events:
        delay = e.recorded_at - e.occurred_at
        if delay <= ctx.config.late_delay_ms:
            continue
        hours = delay // 3_600_000
        onboarded = ctx.onboarded_at(e.court)
        if onboarded is not None and e.occurred_at < onboarded:
            # events.md: history from before the court joined the chain is not "late".
            yield Hit([e], severity="INFO", zh=f"入链前历史记录（延迟{hours}小时）",
                      en=f"pre-chain history (recorded {hours} h after it occurred)",
                      detail={"delay_ms": delay, "pre_chain": True})
        else:
            yield Hit([e], zh=f"延迟{hours}小时", en=f"recorded {hours} h after it occurred",
                      detail={"delay_ms": delay})


@rule("LATE-02", "events.md LATE-02 (post-dated)", "HIGH",
      "事件发生时间晚于上链时间（倒签）", "Post-dated: occurred after it was recorded")
def late02(case: CaseView, ctx: Context) -> Iterator[Hit]:
    for e in case.events:
        ahead = e.occurred_at - e.recorded_at
        if ahead > ctx.config.post_dated_ms:
            yield Hit([e], zh=f"超前{ahead // 60000}分钟", en=f"{ahead // 60000} min ahead",
                      detail={"ahead_ms": ahead})


@rule("CASENO-01", "rulebook §5; 法〔2015〕137号 ✔", "INFO",
      "案号不符合执行案号格式", "The case number is outside the enforcement 案号 format")
def caseno01(case: CaseView, ctx: Context) -> Iterator[Hit]:
    if not case.case_no_ok() and case.events:
        yield Hit([case.events[0]])


@rule("KEY-01", "events.md (identity revoke, compromised_since)", "HIGH",
      "签名密钥已被吊销（泄露）后仍签署的记录", "Signed by a key after it was reported compromised")
def key01(case: CaseView, ctx: Context) -> Iterator[Hit]:
    # events.md: entries a revoked key signed in blocks timed at or after compromised_since are
    # reported as a warning naming the key. (The engine indexes signers when entries arrive,
    # so a later revocation re-evaluates exactly the cases that hold the key's entries.)
    if not ctx.any_compromised:
        return
    for e in case.events:
        for cite, (signer, recorded_at) in zip(e.cites, e.signed, strict=False):
            got = ctx.compromised(signer)
            if got is not None and recorded_at >= got[0]:
                yield Hit([cite, got[1]], kind="warning", zh=f"密钥{signer.hex()[:16]}（{got[2]}）",
                          en=f"key {signer.hex()[:16]} ({got[2]})",
                          detail={"key": signer.hex(), "identity": got[2]})


RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}


def rule_ids() -> list[str]:
    """Every rule id of the catalogue, in book order."""
    return [r.id for r in RULES]


def iter_rules(enabled: Iterable[str] | None = None) -> list[Rule]:
    """The rules to run (all, or those named)."""
    if enabled is None:
        return list(RULES)
    wanted = set(enabled)
    return [r for r in RULES if r.id in wanted]


_ = DAY_MS
