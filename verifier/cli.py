"""``courtledger inspect``: the closed-case inspection (终本智能巡查) from the command line.

Sources (one of): ``--events FILE.jsonl`` (dry runs and what-if checks), ``--data DIR`` (a
stopped node's LevelDB store, with ``--genesis``), ``--node URL`` (a running node's internal
API, with ``--token``). ``--now`` sets the inspection time: integer ms, ISO 8601 with an offset,
or a bare date meaning Beijing midnight. Filters: ``--court``, ``--rule``, ``--severity``,
``--kind``. Output: a table for people, ``--json`` (a list of findings in the shape of
events.md) for programs. ``--reproduce REPORT_ENTRY_ID`` re-derives an on-chain ``report``.

Exit codes (DESIGN §5–§6): 0 it ran, whatever it found; 1 with ``--fail-on SEVERITY`` when a
violation at or above that severity was found, when the input does not parse, or when a
reproduced report does not match; 2 bad usage or a file that cannot be opened; 3 node
unreachable.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from ledger.errors import LedgerError
from verifier.config import DEFAULT_CONFIG, InspectConfig
from verifier.engine import Inspector
from verifier.findings import SEVERITIES, Finding, at_least
from verifier.periods import iso, parse_now
from verifier.records import Record, read_jsonl, records_from_blocks
from verifier.report import reproduce


class _Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return n


def _genesis(path: str | None, data: str | None) -> Any:
    from ledger.genesis import load_genesis

    candidates = [Path(path)] if path else []
    if data and not path:
        d = Path(data).resolve()
        candidates += [p / "genesis.toml" for p in (d, d.parent, d.parent.parent)]
    for p in candidates:
        if p.exists() or path:
            try:
                return load_genesis(p)
            except LedgerError as exc:
                raise _Exit(2, exc.diagnostics()) from None
    raise _Exit(2, "--data needs --genesis FILE (the chain's genesis.toml)")


def _identities_from_genesis(genesis: Any) -> dict[str, bytes]:
    return {i.id: i.public_key for i in genesis.identities}


def _onboarded_from_genesis(genesis: Any) -> dict[str, int]:
    courts = {i.court for i in genesis.identities} | {n.court for n in genesis.nodes}
    return {c: genesis.genesis_time for c in courts}


def _source(events: str | None, data: str | None, node: str | None, genesis: str | None,
            token: str | None, hash_alg: str, progress: Callable[[int, int], None]
            ) -> tuple[Iterator[Record], str, Any, int]:
    """(records, hash_alg, the genesis if known, total units for the progress bar)."""
    chosen = [x for x in (events, data, node) if x]
    if len(chosen) != 1:
        raise _Exit(2, "give exactly one of --events FILE, --data DIR, --node URL")
    if events:
        path = Path(events)
        if not path.is_file():
            raise _Exit(2, f"cannot open events file {path}")
        total = _count_lines(path)

        def gen() -> Iterator[Record]:
            for i, rec in enumerate(read_jsonl(path, hash_alg=hash_alg)):
                if i % 1000 == 0:
                    progress(i, total)
                yield rec
        g = _genesis(genesis, None) if genesis else None
        return gen(), g.hash_alg if g is not None else hash_alg, g, total
    if data:
        from ledger.store import LedgerStore

        g = _genesis(genesis, data)
        # A node's data_dir keeps its ledger store in data_dir/ledger; take either.
        if not (Path(data) / "CURRENT").exists() and (Path(data) / "ledger" / "CURRENT").exists():
            data = str(Path(data) / "ledger")
        try:
            store = LedgerStore.open(data, g)
        except LedgerError as exc:
            raise _Exit(2, exc.diagnostics()) from None
        head = store.head()[0]

        def blocks() -> Iterator[dict[str, Any]]:
            try:
                for block in store.iter_blocks():
                    progress(block["header"]["height"], head)
                    yield block
            finally:
                store.close()
        return records_from_blocks(blocks(), hash_alg=g.hash_alg), g.hash_alg, g, head
    assert node is not None
    return _node_source(node, genesis, token, hash_alg, progress)


def _node_source(url: str, genesis: str | None, token: str | None, hash_alg: str,
                 progress: Callable[[int, int], None]
                 ) -> tuple[Iterator[Record], str, Any, int]:
    import httpx

    from ledger.encoding import decode

    g = _genesis(genesis, None) if genesis else None
    if g is not None:
        hash_alg = g.hash_alg
    headers = {"accept": "application/msgpack"}
    if token:
        try:
            headers["authorization"] = "Bearer " + Path(token).read_text().strip()
        except OSError as exc:
            raise _Exit(2, f"cannot read token file {token}: {exc.strerror}") from None
    client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30)
    try:
        head = client.get("/v1/head").raise_for_status().json()["height"]
    except httpx.HTTPError as exc:
        raise _Exit(3, f"node {url} unreachable: {exc}") from None

    def blocks() -> Iterator[dict[str, Any]]:
        try:
            for h in range(1, head + 1):
                progress(h, head)
                try:
                    r = client.get(f"/v1/blocks/{h}").raise_for_status()
                except httpx.HTTPError as exc:
                    raise _Exit(3, f"node {url}: block {h}: {exc}") from None
                yield decode(r.content)
        finally:
            client.close()
    return records_from_blocks(blocks(), hash_alg=hash_alg), hash_alg, g, head


def _table(findings: list[Finding], summary: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    style = {"CRIT": "bold red", "HIGH": "red", "MED": "yellow", "INFO": "cyan"}
    for kind, title in (("violation", "Violations 违规"), ("warning", "Warnings 期限预警")):
        rows = [f for f in findings if f.kind == kind]
        if not rows:
            continue
        t = Table(title=f"{title} ({len(rows)})", show_lines=False)
        for col in ("case 案号", "rule", "sev", "due", "message", "entries"):
            t.add_column(col, overflow="fold")
        for f in rows:
            due = iso(f.due)[:10] if f.due is not None else ""
            if f.provisional:
                due += " (provisional)"
            ents = ", ".join(i.hex()[:12] + (f"@{h}" if h is not None else "")
                             for i, h in f.entries[:3])
            if len(f.entries) > 3:
                ents += f" +{len(f.entries) - 3}"
            t.add_row(f.case, f.rule, f"[{style[f.severity]}]{f.severity}[/]", due,
                      f"{f.message_zh}\n{f.message_en}", ents)
        console.print(t)
    s = Table(title="By court 按法院")
    for col in ("court", "cases", "CRIT", "HIGH", "MED", "INFO", "warnings", "cases with CRIT"):
        s.add_column(col)
    for court in sorted(summary):
        v = summary[court]
        s.add_row(court, str(v["cases"]), *(str(v["violations"].get(x, 0)) for x in SEVERITIES),
                  str(sum(v["warnings"].values())), str(v["cases_with_crit"]))
    console.print(s)


@click.command("inspect")
@click.option("--events", type=click.Path(), help="An events file (JSON lines).")
@click.option("--data", type=click.Path(), help="A stopped node's data directory.")
@click.option("--node", help="A running node's internal API URL.")
@click.option("--genesis", "--consortium", "genesis", type=click.Path(),
              help="The chain's genesis.toml (for --data; hash and onboarding times).")
@click.option("--token", type=click.Path(), help="Bearer token file for --node.")
@click.option("--hash-alg", default="sha256", type=click.Choice(["sha256", "sm3"]),
              show_default=True, help="Chain hash for entry ids of an events file.")
@click.option("--now", "now_text", help="Inspection time: ms, ISO 8601 with offset, or a date.")
@click.option("--config", "config_path", type=click.Path(), help="Inspection settings (TOML).")
@click.option("--court", multiple=True, help="Only this court (法院代字); repeatable.")
@click.option("--rule", multiple=True, help="Only this rule id; repeatable.")
@click.option("--severity", multiple=True, type=click.Choice(SEVERITIES),
              help="Only this severity; repeatable.")
@click.option("--kind", type=click.Choice(["violation", "warning"]), help="Only this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of findings.")
@click.option("--fail-on", type=click.Choice(SEVERITIES),
              help="Exit 1 if a violation at or above this severity was found.")
@click.option("--reproduce", "report_id", help="Re-derive the report entry with this id (hex).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def inspect(events: str | None, data: str | None, node: str | None, genesis: str | None,
            token: str | None, hash_alg: str, now_text: str | None, config_path: str | None,
            court: tuple[str, ...], rule: tuple[str, ...], severity: tuple[str, ...],
            kind: str | None, as_json: bool, fail_on: str | None, report_id: str | None,
            no_progress: bool) -> None:
    """Inspect closed (终本) cases and flow-node deadlines against the rule book."""
    try:
        code = _run(events, data, node, genesis, token, hash_alg, now_text, config_path,
                    court, rule, severity, kind, as_json, fail_on, report_id, no_progress)
    except _Exit as exc:
        click.echo(f"inspect: {exc.message}", err=True)
        sys.exit(exc.code)
    sys.exit(code)


def _run(events: str | None, data: str | None, node: str | None, genesis: str | None,
         token: str | None, hash_alg: str, now_text: str | None, config_path: str | None,
         court: tuple[str, ...], rule: tuple[str, ...], severity: tuple[str, ...],
         kind: str | None, as_json: bool, fail_on: str | None, report_id: str | None,
         no_progress: bool) -> int:
    try:
        config = InspectConfig.from_toml(config_path) if config_path else DEFAULT_CONFIG
    except (OSError, ValueError) as exc:
        raise _Exit(2, f"--config {config_path}: {exc}") from None
    from verifier.rules import RULES_BY_ID

    unknown = [r for r in rule if r not in RULES_BY_ID]
    if unknown:
        raise _Exit(2, f"unknown rule(s) {', '.join(unknown)}; known: "
                       f"{', '.join(RULES_BY_ID)}")
    try:
        now = parse_now(now_text) if now_text else int(time.time() * 1000)
    except ValueError as exc:
        raise _Exit(2, str(exc)) from None

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    show = not no_progress and sys.stderr.isatty()
    bar = Progress(TextColumn("inspect"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeRemainingColumn(), transient=True, disable=not show)
    task = bar.add_task("read", total=None)

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        records, alg, g, _total = _source(events, data, node, genesis, token, hash_alg,
                                          progress)
        known: dict[str, Any] = {}
        if g is not None:
            known = {"onboarded": _onboarded_from_genesis(g),
                     "identities": _identities_from_genesis(g)}
        try:
            if report_id:
                try:
                    rid = bytes.fromhex(report_id)
                except ValueError:
                    raise _Exit(2, f"--reproduce {report_id!r} is not hex") from None
                try:
                    rep = reproduce(records, rid, config, hash_alg=alg, **known)
                except LookupError as exc:
                    raise _Exit(1, str(exc)) from None
                return _print_reproduction(rep, as_json)
            insp = Inspector(config, hash_alg=alg, **known)
            insp.ingest(records, now=now)
        except ValueError as exc:  # a line or block that does not parse
            raise _Exit(1, str(exc)) from None
        except LedgerError as exc:
            raise _Exit(1, exc.diagnostics()) from None
    found = insp.findings(rule=rule or None, severity=severity or None, kind=kind)
    if court:
        found = [f for f in found if f.court in set(court)]
    if as_json:
        click.echo(json.dumps([f.to_json() for f in found], ensure_ascii=False, indent=1))
    else:
        summary = insp.summary_by_court()
        if court:
            summary = {c: v for c, v in summary.items() if c in set(court)}
        _table(found, summary)
        click.echo(f"{len(insp.cases)} cases inspected at {iso(now)}; "
                   f"{sum(f.kind == 'violation' for f in found)} violations, "
                   f"{sum(f.kind == 'warning' for f in found)} warnings; "
                   f"findings digest {insp.digest().hex()}")
    if fail_on and any(f.kind == "violation" and at_least(f.severity, fail_on) for f in found):
        return 1
    return 0


def _print_reproduction(rep: Any, as_json: bool) -> int:
    def hexed(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v.hex() if isinstance(v, bytes) else v for k, v in d.items()}

    if as_json:
        click.echo(json.dumps({"matches": rep.matches, "report": hexed(rep.report),
                               "recomputed": hexed(rep.recomputed)}, ensure_ascii=False))
    elif rep.matches:
        click.echo(f"report reproduced: {rep.recomputed['count']} findings, digest "
                   f"{rep.recomputed['findings']}")
        for d in rep.differences():
            click.echo(f"  note: {d}")
    else:
        click.echo("report NOT reproduced:")
        for d in rep.differences():
            click.echo(f"  {d}")
    return 0 if rep.matches else 1


if __name__ == "__main__":  # pragma: no cover
    inspect()
