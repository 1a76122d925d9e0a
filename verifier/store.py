"""The inspector's derived per-case store: every entry of every case, compactly.

The engine reads a case whole when it evaluates it, and evaluates a case only when one of its
entries arrives or one of its deadlines passes. So cases are kept as lists of compact entries
(``marshal`` of ``(entry id, height, recorded_at, hash alg, payload)``: about 500 bytes per
event, a sixth of the decoded objects) and decoded on demand, with the recently used cases kept
decoded by the engine. :class:`LevelDBCaseStore` moves the lists to disk for a node that
follows a long chain.

The store is derived data: it is rebuilt from the chain, never read as evidence, so the format
may change between versions (a LevelDB store is wiped when opened). ``marshal`` is used only
for bytes this process wrote itself.
"""

from __future__ import annotations

import marshal
import shutil
from pathlib import Path
from typing import Protocol

from verifier.records import Record


class CaseStore(Protocol):
    """Append-only lists of encoded entries, by case number."""

    def append(self, case: str, item: bytes) -> None:
        """Add one encoded entry at the end of ``case``'s list."""

    def items(self, case: str) -> list[bytes]:
        """Every encoded entry of ``case``, in the order appended."""

    def drop(self, case: str) -> None:
        """Forget ``case``."""

    def close(self) -> None:
        """Release resources."""


class MemoryCaseStore:
    """Encoded entries in memory."""

    def __init__(self) -> None:
        self._lists: dict[str, list[bytes]] = {}

    def append(self, case: str, item: bytes) -> None:
        self._lists.setdefault(case, []).append(item)

    def items(self, case: str) -> list[bytes]:
        return self._lists.get(case, [])

    def drop(self, case: str) -> None:
        self._lists.pop(case, None)

    def close(self) -> None:
        self._lists.clear()


class NullCaseStore:
    """Keeps nothing: for streaming inspection, where each case stays decoded until done."""

    def append(self, case: str, item: bytes) -> None:
        pass

    def items(self, case: str) -> list[bytes]:
        raise LookupError("a streaming inspection keeps no store")

    def drop(self, case: str) -> None:
        pass

    def close(self) -> None:
        pass


class LevelDBCaseStore:
    """Encoded entries in a LevelDB directory of their own (wiped when opened: derived data)."""

    def __init__(self, path: str | Path) -> None:
        import plyvel

        p = Path(path)
        if p.exists():
            shutil.rmtree(p)
        p.mkdir(parents=True)
        self._db = plyvel.DB(str(p), create_if_missing=True)
        self._counts: dict[str, int] = {}

    @staticmethod
    def _prefix(case: str) -> bytes:
        return case.encode("utf-8") + b"\x00"

    def append(self, case: str, item: bytes) -> None:
        n = self._counts.get(case, 0)
        self._db.put(self._prefix(case) + n.to_bytes(4, "big"), item)
        self._counts[case] = n + 1

    def items(self, case: str) -> list[bytes]:
        return [v for _, v in self._db.iterator(prefix=self._prefix(case))]

    def drop(self, case: str) -> None:
        with self._db.write_batch() as wb:
            for k in self._db.iterator(prefix=self._prefix(case), include_value=False):
                wb.delete(k)
        self._counts.pop(case, None)

    def close(self) -> None:
        self._db.close()


def encode_entry(rec: Record) -> bytes:
    """The compact form of a record (its entry id only if already known)."""
    return marshal.dumps((rec._entry_id, rec.height, rec.recorded_at, rec.hash_alg,
                          dict(rec.payload)))


def decode_entry(data: bytes) -> Record:
    """The record back from :func:`encode_entry`."""
    entry_id, height, recorded_at, alg, payload = marshal.loads(data)  # noqa: S302 - own bytes
    return Record(entry_id, height, recorded_at, payload, alg)
