"""Admission: what the accepting node checks before it queues a submission (DESIGN §2).

Admission is kept apart from validity. :func:`ledger.entries.admit` runs the node's own policy
(案号 and ``doc_no`` in normal form, event field types from domain/events.md, time against the
local clock, document and evidence bodies) and then validity against the applied state as if in
the next block. A refusal is a 4xx that names the entry's index in the batch; it never makes a
block invalid, so this policy can evolve without a fork.

A batch is all or nothing: :func:`admit_batch` checks every entry before the caller queues any.
It runs in a worker thread (PyNaCl releases the GIL while it verifies), so the event loop that
drives Raft keeps its heartbeats while a large batch is checked.
"""

from __future__ import annotations

import time
from typing import Any

from ledger.encoding import canonical
from ledger.entries import admit
from ledger.errors import AdmissionError, LedgerError

#: ``(index in the batch, entry id, envelope)`` of each entry not already pending here.
Fresh = list[tuple[int, bytes, dict[str, Any]]]
#: ``(entry id, envelope, canonical size)`` of each admitted entry, for the builder.
Admitted = list[tuple[bytes, dict[str, Any], int]]


def admit_batch(chain: Any, fresh: Fresh, now_ms: int | None = None) -> Admitted:
    """Admit each entry against one state (the applied head's); raise naming the index.

    Entries already in the chain are replays and are left out (answered as the original).
    """
    state = chain.state  # one state for the whole batch
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    out: Admitted = []
    for i, eid, env in fresh:
        try:
            if chain.has_entry(eid):
                continue  # committed meanwhile: a replay
            size = len(canonical(env))
            if size > chain.params.max_entry_bytes:
                raise AdmissionError(
                    f"entry of {size} bytes exceeds max_entry_bytes "
                    f"{chain.params.max_entry_bytes}"
                )
            admit(env, state=state, chain_id=chain.chain_id, now_ms=now,
                  is_known=chain.has_entry, verified=chain.verified)
        except LedgerError as exc:
            exc.detail = f"entries[{i}]: {exc.detail}"
            exc.args = (exc.detail,)
            raise
        except (KeyError, TypeError, AttributeError) as exc:
            raise AdmissionError(f"entries[{i}]: not an envelope ({exc})") from None
        out.append((eid, env, size))
    return out
