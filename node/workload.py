"""A small synthetic enforcement workload for ``courtledger demo``, the e2e tests and the bench.

The verifier's generator (``verifier/synth.py``, following domain/events.md) is the realistic
one and is used when present (:func:`load_items`). Until then this module writes a minimal,
schema-conforming workload: per case (执行案件) a filing, an enforcement notice (执行通知书, a
real file whose SHA-256 is anchored, so a user can drop it on the verification page), a site
investigation with body-camera evidence, and for some cases the 终本 ruling and closure.

Items are unsigned: ``{"kind", "case", "court", "role", "body"}``; :func:`sign_items` signs each
with the key of an identity of that court and role made by ``courtledger init``.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from pathlib import Path
from typing import Any

from ledger.crypto import Ed25519Signer
from ledger.entries import make_payload, sign_entry
from ledger.genesis import Genesis
from node.init import court_by_code

DAY_MS = 86_400_000
#: The demo's stand-in for the courts' shared party key (events.md: parties appear only as
#: keyed hashes; the real key is never on chain).
DEMO_PARTY_KEY = b"courtledger-demo-party-key"


def party_hash(id_type: str, normalised_id: str) -> str:
    """``hex(HMAC-SHA256(k_parties, id_type + ":" + id))`` (domain/events.md)."""
    msg = f"{id_type}:{normalised_id}".encode()
    return hmac.new(DEMO_PARTY_KEY, msg, hashlib.sha256).hexdigest()


def generate(courts: list[str], cases: int, seed: int = 1, docs_dir: Path | None = None,
             now_ms: int | None = None, first_seq: int = 1000) -> list[dict[str, Any]]:
    """Unsigned items for ``cases`` enforcement cases spread over ``courts`` (法院代字).

    With ``docs_dir`` the anchored documents are written there as files.
    """
    rng = random.Random(seed)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    courts = [c for c in courts if c != "最高法"] or courts
    items: list[dict[str, Any]] = []
    for n in range(cases):
        court = courts[n % len(courts)]
        year = 2025
        case = f"（{year}）{court}执{first_seq + n}号"
        filed = now - rng.randint(120, 300) * DAY_MS
        debtor = party_hash("rid", f"22010{rng.randint(1000000000000, 9999999999999)}")
        applicant = party_hash("uscc", f"91220101MA{rng.randint(10000000, 99999999)}")
        officer = f"{court_by_code(court).slug}-officer1"

        def event(etype: str, at: int, fields: dict[str, Any], *, officer: str = officer,
                  case: str = case, court: str = court, **refs: list[bytes],
                  ) -> dict[str, Any]:
            body: dict[str, Any] = {"type": etype, "occurred_at": at,
                                    "actor": {"officer_id": officer, "role": "officer"},
                                    "fields": fields}
            body.update({k: v for k, v in refs.items() if v})
            return {"kind": "event", "case": case, "court": court, "role": "officer",
                    "body": body}

        def document(doc_type: str, suffix: str, at: int, *, case: str = case,
                     court: str = court, debtor: str = debtor, applicant: str = applicant,
                     ) -> tuple[dict[str, Any], bytes]:
            doc_no = f"{case}{suffix}"
            text = (f"{court_by_code(court).name}\n{doc_type}\n{doc_no}\n"
                    f"被执行人（密钥哈希）{debtor[:16]}…\n申请执行人（密钥哈希）{applicant[:16]}…\n"
                    f"日期 {time.strftime('%Y-%m-%d', time.gmtime(at / 1000))}\n"
                    f"（courtledger 演示文书 demo document, seed {seed}）\n")
            content = text.encode("utf-8")
            digest = hashlib.sha256(content).digest()
            if docs_dir is not None:
                docs_dir.mkdir(parents=True, exist_ok=True)
                (docs_dir / f"{doc_no}-{doc_type}.txt").write_bytes(content)
            body = {"doc_type": doc_type, "doc_no": doc_no, "sha256": digest,
                    "size": len(content), "media_type": "text/plain", "title": doc_type}
            return ({"kind": "document", "case": case, "court": court, "role": "clerk",
                     "body": body}, digest)

        items.append(event("CASE_FILED", filed, {
            "case_type": "执", "source": "申请",
            "amount_claimed_fen": rng.randint(10_000, 50_000_000) * 100,
            "applicants": [{"kind": "legal", "party": applicant}],
            "debtors": [{"kind": "natural", "party": debtor}],
        }))
        notice, notice_sha = document("执行通知书", "之一", filed + DAY_MS)
        items.append(notice)
        items.append(event("EXEC_NOTICE_ISSUED", filed + DAY_MS, {
            "doc_no": f"{case}之一", "party": debtor, "dishonest_warning": True,
            "perform_deadline": filed + 8 * DAY_MS,
        }, doc_refs=[notice_sha]))
        items.append(event("NET_INQUIRY_REQUESTED", filed + 2 * DAY_MS, {
            "batch_id": f"B{n:05d}", "channel": "总对总", "party": debtor,
            "categories": ["DEPOSIT", "VEHICLE", "REAL_ESTATE", "SECURITIES"],
        }))
        visit = filed + rng.randint(10, 60) * DAY_MS
        photo = hashlib.sha256(f"photo {case} {seed}".encode()).digest()
        items.append({"kind": "evidence", "case": case, "court": court, "role": "officer",
                      "body": {"sha256": photo, "media_type": "image/jpeg",
                               "size": rng.randint(200_000, 4_000_000),
                               "captured_at": visit + 600_000,
                               "location": {"lat_e6": 43_880_000 + rng.randint(0, 90_000),
                                            "lon_e6": 125_320_000 + rng.randint(0, 90_000)},
                               "device": f"BWC-{rng.randint(100, 999)}",
                               "officers": [officer, officer.replace("officer1", "officer2")]}})
        items.append(event("SITE_INVESTIGATION", visit, {
            "party": debtor, "start_at": visit, "end_at": visit + 3_600_000,
            "officers": [officer, officer.replace("officer1", "officer2")],
            "findings": "未发现可供执行财产",
            "address_hash": party_hash("addr", f"{case}-home"),
        }, evidence_refs=[photo]))
        if n % 3 == 0:
            ruling_at = filed + rng.randint(95, 115) * DAY_MS
            ruling, ruling_sha = document("终结本次执行程序裁定书", "之二", ruling_at)
            items.append(ruling)
            items.append(event("ZB_RULING_ISSUED", ruling_at, {
                "doc_no": f"{case}之二", "amount_realized_fen": 0,
                "amount_outstanding_fen": 1_000_000, "contains_claim": True,
                "contains_process": True, "contains_property": True,
                "contains_realized": True, "contains_rights": True,
            }, doc_refs=[ruling_sha]))
            items.append(event("CASE_CLOSED", ruling_at + DAY_MS,
                               {"doc_no": f"{case}之二", "mode": "终本"}))
    return items


def load_items(courts: list[str], cases: int, seed: int = 1,
               docs_dir: Path | None = None) -> list[dict[str, Any]]:
    """The verifier's synthetic workload (``verifier.synth.demo_items``) when available, plus a
    few cases of :func:`generate` whose documents are written to ``docs_dir`` so that a user
    has real files to verify; without the verifier, :func:`generate` alone."""
    try:
        from verifier import synth
    except ImportError:
        synth = None  # type: ignore[assignment]
    if synth is None or not hasattr(synth, "demo_items"):
        return generate(courts, cases, seed, docs_dir)
    items = list(synth.demo_items(courts=courts, cases=cases, seed=seed))
    return items + generate(courts, min(cases, 6), seed, docs_dir, first_seq=9000)


def sign_items(items: list[dict[str, Any]], genesis: Genesis,
               keys_dir: Path) -> list[dict[str, Any]]:
    """Sign each item with ``keys_dir/<court slug>-<role>1.key`` (``init``'s layout)."""
    signers: dict[tuple[str, str], Ed25519Signer] = {}
    out = []
    now = int(time.time() * 1000)
    for item in items:
        key = (item["court"], item["role"])
        if key not in signers:
            slug = court_by_code(item["court"]).slug
            signers[key] = Ed25519Signer.from_file(keys_dir / f"{slug}-{item['role']}1.key")
        signer = signers[key]
        payload = make_payload(item["kind"], item["court"], signer.public_key(), item["body"],
                               now, case=item.get("case"))
        out.append(sign_entry(signer, genesis.chain_id, payload))
    return out
