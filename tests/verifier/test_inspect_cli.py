"""``courtledger inspect`` over an events file: output forms, filters, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from casebook import NOW, compliant
from click.testing import CliRunner

from verifier.cli import inspect
from verifier.periods import DAY_MS
from verifier.records import Record, write_jsonl
from verifier.synth import generate


def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "e.jsonl"
    write_jsonl(path, compliant().records())
    return path


def test_json_output_in_the_finding_shape(tmp_path: Path) -> None:
    path = events_file(tmp_path)
    r = CliRunner().invoke(inspect, ["--events", str(path), "--now", str(NOW + 400 * DAY_MS),
                                     "--json"])
    assert r.exit_code == 0, r.output
    found = json.loads(r.output)
    assert found and {f["rule"] for f in found} == {"ZB-31"}
    f = found[0]
    for key in ("case", "rule", "kind", "severity", "message_zh", "message_en", "citation",
                "entries", "due"):
        assert key in f
    assert len(f["entries"][0]["id"]) == 64


def test_clean_case_table_and_now_forms(tmp_path: Path) -> None:
    path = events_file(tmp_path)
    for now in ("2025-07-15", "2025-07-15T00:00:00+08:00", str(NOW)):
        r = CliRunner().invoke(inspect, ["--events", str(path), "--now", now])
        assert r.exit_code == 0, r.output
        assert "0 violations, 0 warnings" in r.output


def test_fail_on_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    write_jsonl(path, [r for sc in generate(30, seed=2, now=NOW + 400 * DAY_MS)
                       for r in sc.records()])
    base = ["--events", str(path), "--now", str(NOW + 400 * DAY_MS)]
    assert CliRunner().invoke(inspect, base).exit_code == 0
    r = CliRunner().invoke(inspect, [*base, "--fail-on", "INFO"])
    assert r.exit_code == 1
    r = CliRunner().invoke(inspect, [*base, "--json", "--severity", "CRIT", "--court", "吉0102"])
    found = json.loads(r.output)
    assert all(f["severity"] == "CRIT" and f["court"] == "吉0102" for f in found)


def test_bad_usage_and_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(inspect, ["--events", str(tmp_path / "missing.jsonl")]).exit_code == 2
    assert runner.invoke(inspect, []).exit_code == 2
    path = events_file(tmp_path)
    assert runner.invoke(inspect, ["--events", str(path), "--now", "yesterday"]).exit_code == 2
    assert runner.invoke(inspect, ["--events", str(path), "--rule", "ZB-99"]).exit_code == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"recorded_at": 1, "payload": {"body": {"sha256": "zz"}}}\n')
    r = runner.invoke(inspect, ["--events", str(bad)])
    assert r.exit_code == 1 and "bad.jsonl:1" in r.output


def test_reproduce_a_report(tmp_path: Path) -> None:
    from verifier.engine import inspect_records

    recs = compliant().records()
    now = NOW + 400 * DAY_MS
    body = inspect_records(recs, now).report_body(0)
    report = Record.of({"v": 1, "kind": "report", "court": "最高法", "time": now,
                        "nonce": b"\x01" * 16, "signer": b"\x02" * 32, "body": body}, now)
    path = tmp_path / "r.jsonl"
    write_jsonl(path, [*recs, report])
    r = CliRunner().invoke(inspect, ["--events", str(path), "--reproduce",
                                     report.entry_id.hex()])
    assert r.exit_code == 0 and "reproduced" in r.output, r.output
    r = CliRunner().invoke(inspect, ["--events", str(path), "--reproduce", "ab" * 32])
    assert r.exit_code == 1


def test_over_a_node_api(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # --node URL reads /v1/head and /v1/blocks/{h} (canonical msgpack) with the bearer token.
    import httpx

    from ledger.encoding import canonical

    recs = sorted(compliant().records(), key=lambda r: r.recorded_at)
    blocks = [{"header": {"height": h, "time": r.recorded_at},
               "entries": [{"payload": dict(r.payload), "sig": b"\x00" * 64}]}
              for h, r in enumerate(recs, 1)]
    seen_auth: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        seen_auth.add(request.headers.get("authorization", ""))
        if request.url.path == "/v1/head":
            return httpx.Response(200, json={"height": len(blocks)})
        h = int(request.url.path.rsplit("/", 1)[1])
        return httpx.Response(200, content=canonical(blocks[h - 1]))

    real = httpx.Client
    monkeypatch.setattr(httpx, "Client",
                        lambda **kw: real(transport=httpx.MockTransport(handler), **kw))
    token = tmp_path / "t.token"
    token.write_text("secret\n")
    r = CliRunner().invoke(inspect, ["--node", "http://node:8080", "--token", str(token),
                                     "--now", str(NOW + 400 * DAY_MS), "--json"])
    assert r.exit_code == 0, r.output
    found = json.loads(r.output)
    assert {f["rule"] for f in found} == {"ZB-31"}
    assert all("height" in e for f in found for e in f["entries"])
    assert seen_auth == {"Bearer secret"}

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(httpx, "Client",
                        lambda **kw: real(transport=httpx.MockTransport(down), **kw))
    assert CliRunner().invoke(inspect, ["--node", "http://node:8080"]).exit_code == 3
