"""courtledger verifier: the closed-case intelligent inspection (终本智能巡查) and the flow-node
deadline warnings (节点期限预警), over the ledger's entries.

The rule book (domain/rulebook.md) is code in :mod:`verifier.rules`: one small pure check per
rule, with id, citation, severity and Chinese/English messages; domain/events.md decides how
each reads time. Periods follow 民诉法 §85 with the ``chinese_calendar`` package
(:mod:`verifier.periods`). Limits the rule book marks ○ are settings (:class:`InspectConfig`).

The API a node uses (it imports only ``ledger``)::

    from verifier import Inspector, InspectConfig, Record, records_from_blocks

    insp = Inspector(InspectConfig(), hash_alg="sha256", onboarded={"吉0102": genesis_time},
                     identities={"officer-1": public_key},        # genesis identities (KEY-01)
                     store=LevelDBCaseStore(data_dir / "inspect"))  # default: in memory
    insp.ingest(records_from_blocks([block]), now=block_time)   # per applied block
    insp.advance_time(now_ms)                   # deadlines that fell due since (cheap)
    insp.findings(case=, court=, rule=, severity=, kind=)      # list[Finding], report order
    insp.summary_by_court()                     # {court: {cases, violations, warnings, ...}}
    insp.report_body(height, now)               # the body of a `report` entry (DESIGN §2)
    finding.to_json()                           # the finding shape of events.md

- :class:`Record` ``(entry_id, height, recorded_at, payload)`` is the engine's one input; the
  entry id is ``H(canonical(payload))``. :func:`records_from_blocks` makes them from DESIGN §2
  blocks, :func:`read_jsonl` from an events file.
- The engine's state is derived and rebuildable (a LevelDB case store is wiped when opened:
  replay the chain into it): a full run over the same records at the same ``now`` gives the
  same findings (tested after every block of a generated workload). The Inspector is
  thread-safe (one lock): apply blocks on one thread, serve findings from others.
- A ``report`` body's ``height`` must be below the height of the block that will hold it
  (ledger validity); ``ruleset`` and ``findings`` are lowercase hex.
- :func:`verifier.report.reproduce` re-derives a ``report`` entry from the chain;
  ``courtledger inspect`` (:mod:`verifier.cli`) is the command line.
- :mod:`verifier.synth` writes a realistic workload with its ground truth; ``demo_items`` gives
  the node's demo unsigned items.
"""

from verifier.config import DEFAULT_CONFIG, InspectConfig
from verifier.engine import Inspector, inspect_records, stream_inspect
from verifier.findings import Finding, findings_digest
from verifier.records import Record, read_jsonl, records_from_blocks
from verifier.report import build_report_body, reproduce
from verifier.store import LevelDBCaseStore, MemoryCaseStore

__all__ = [
    "DEFAULT_CONFIG",
    "Finding",
    "InspectConfig",
    "Inspector",
    "LevelDBCaseStore",
    "MemoryCaseStore",
    "Record",
    "build_report_body",
    "findings_digest",
    "inspect_records",
    "read_jsonl",
    "records_from_blocks",
    "reproduce",
    "stream_inspect",
]
