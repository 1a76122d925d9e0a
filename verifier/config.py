"""The inspection's configuration: every limit and rule the rule book marks ○ is a setting here.

domain/README.md: "Rules and limits marked ○ must be configurable, not hard-coded as legal
fact." The defaults follow domain/rulebook.md and domain/events.md. The configuration is part of
what a ``report`` entry commits to (``ruleset = H(canonical(config.to_map()))``), so two
inspections agree only when they ran the same rules with the same limits.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.crypto import hash_object


@dataclass(frozen=True)
class InspectConfig:
    """Limits and switches of the inspection (days unless named otherwise)."""

    #: Rule ids switched off (an empty tuple runs every rule).
    disabled_rules: tuple[str, ...] = ()
    # ZB-01 (终本规定 §1(4) ✔): more than this many months since filing.
    zb_min_months: int = 3
    # ZB-08 (财产调查规定 §2 ✔): lead verification, normal and urgent.
    clue_verify_days: int = 7
    clue_verify_urgent_days: int = 3
    # ZB-09 (终本规定 §3(2) ○): categories every debtor's network inquiry must cover.
    required_inquiry_categories: tuple[str, ...] = ("DEPOSIT", "VEHICLE", "REAL_ESTATE",
                                                    "SECURITIES")
    # ZB-12 (财产调查规定 §17, §21 ✔): decision on an audit or reward application.
    audit_reward_decision_days: int = 10
    granted_decisions: tuple[str, ...] = ("granted", "approved", "准许", "同意")
    # ZB-23: debtor kinds that are legal persons (破产 referral advisory).
    legal_person_kinds: tuple[str, ...] = ("legal", "legal_person", "organisation",
                                           "organization", "法人")
    # ZB-30 (终本规定 §12 ○): entry in the 终本 database after service.
    zb_db_entry_days: int = 7
    # ZB-31 (终本规定 §9 ✔): post-closure query windows.
    post_query_window_months: int = 6
    post_query_windows: int = 10
    # ZB-32 (§9 ✔, §10 ○): act on found property after a post-closure query.
    resume_after_found_days: int = 30
    # ZB-33 (§15 ○): a release/lift/delist whose reason contains one of these is "because of 终本".
    zb_reasons: tuple[str, ...] = ("终本", "终结本次执行")
    # ZB-34 / deadline table (民诉解释 §485 ✔): seizure limits in months by kind of property.
    deposit_freeze_months: int = 12
    movable_seizure_months: int = 24
    other_seizure_months: int = 36
    # ZB-35 (§18 ○): mask in the 终本 database after final payment or termination.
    zb_db_mask_days: int = 3
    # ZB-36 (失信规定 §10(4) ◐): fruitless post-closure queries before delisting is permitted.
    delist_after_fruitless_queries: int = 2
    # ND-01 … ND-07 (期限规定, 参考价规定, 网拍规定, 法发〔2017〕6号).
    handler_assign_days: int = 7
    exec_notice_days: int = 10
    provide_clues_notice_days: int = 3
    case_limit_months: int = 6
    case_limit_months_non_litigation: int = 3
    valuation_start_days: int = 30
    disposal_start_days: int = 10
    reauction_days: int = 30
    max_price_cut_percent: int = 20
    auction_rounds_before_in_kind: int = 2
    payout_days: int = 30
    # EV-01 (法发〔2022〕16号 ◐; officers ○).
    evidence_window_ms: int = 3_600_000
    min_officers: int = 2
    # LATE-01 / LATE-02 (events.md).
    late_delay_ms: int = 72 * 3_600_000
    post_dated_ms: int = 3_600_000
    # Deadline warning levels before a due time (rulebook §2 "T-30d, T-7d, T-1d and OVERDUE").
    warn_days: tuple[int, ...] = (30, 7, 1)

    def to_map(self) -> dict[str, Any]:
        """The configuration as a canonical-encodable map (lists for tuples)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def ruleset_hash(self, hash_alg: str = "sha256") -> bytes:
        """``H(canonical(rule config))`` as a ``report`` entry records it (DESIGN §2)."""
        from verifier.rules import RULES  # the rule catalogue is part of the ruleset

        ruleset = {"config": self.to_map(),
                   "rules": sorted(r.id for r in RULES if r.id not in self.disabled_rules)}
        return hash_object(hash_alg, ruleset)

    def enabled(self, rule_id: str) -> bool:
        """True unless the rule is switched off."""
        return rule_id not in self.disabled_rules

    @classmethod
    def from_toml(cls, path: str | Path) -> InspectConfig:
        """Load overrides from a TOML file (keys as the field names; unknown keys refused)."""
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_map(data.get("inspect", data))

    @classmethod
    def from_map(cls, data: dict[str, Any]) -> InspectConfig:
        """Build from a map of overrides; unknown keys raise ``ValueError`` naming them."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown inspection setting(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in data.items()}
        return cls(**kwargs)


DEFAULT_CONFIG = InspectConfig()
