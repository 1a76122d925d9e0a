"""Where an auditor reads a chain from: a chain bundle, a stopped node's data dir, or a node.

Every source yields the same stream of :class:`Item` values in chain order: the genesis block
with its consortium map, then blocks 1, 2, … and then checkpoints with their signatures, as a
chain bundle holds them (DESIGN §2 "Chain bundles"). What the container itself gets wrong (a
truncated frame, a missing or out-of-place block, a record that does not decode) is a
:class:`Damage` item with the height it concerns, so the auditor reports it like any other
problem and keeps reading whenever the container allows it.

Sources judge nothing about the chain: hash links, signatures, roots and quorums are
``ledger.chain.ChainVerifier``'s job. They only fetch, frame and decode, and they never trust a
node or a file more than that (a node's answer is decoded with the strict canonical decoder,
exactly like a bundle frame).

Errors that are not about the data under audit are exceptions: :class:`SourceUnopenable` (exit
2: a file that cannot be opened, a data dir held by a running node, a token refused) and
:class:`NodeUnreachable` (exit 3), DESIGN §6.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from ledger.bundle import MAX_FRAME
from ledger.checkpoints import from_file
from ledger.encoding import canonical, decode
from ledger.errors import CheckpointError, EncodingError, LedgerError

__all__ = [
    "BundleSource",
    "ChainSource",
    "DataDirSource",
    "Damage",
    "Item",
    "NodeClient",
    "NodeSource",
    "NodeUnreachable",
    "SourceUnopenable",
    "open_source",
]


class SourceUnopenable(Exception):
    """The source cannot be opened or read at all (DESIGN §6 exit 2); one line of reason."""


class NodeUnreachable(Exception):
    """The node did not answer (DESIGN §6 exit 3)."""


@dataclass(frozen=True)
class Damage:
    """Something wrong with the container at ``height`` (None: before any block).

    ``fatal`` means nothing more can be read after it (a truncated bundle).
    """

    height: int | None
    what: str
    fatal: bool = False


@dataclass(frozen=True)
class Item:
    """One thing read from a source.

    ``kind`` is ``genesis`` (``value`` = ``{"block", "consortium"}``; the consortium is None
    when the source cannot supply it, e.g. a node), ``block`` (``value`` = the block map),
    ``checkpoint`` (``value`` = ``{"checkpoint", "signatures"}``) or ``damage`` (``damage``).
    ``size`` is how many bytes the item took (for progress over a file).
    """

    kind: str
    value: Any = None
    damage: Damage | None = None
    size: int = 0
    #: For a block read from a file: each entry's bytes as stored, to prove them canonical.
    raw: list[bytes] | None = None
    #: Where the item starts in its file.
    offset: int | None = None


class ChainSource:
    """The interface every source implements (a plain base class: three implementations)."""

    #: A human name for messages ("bundle chain.bundle", "node http://…").
    name: str = "source"

    def total_blocks(self) -> int | None:
        """The head height if the source knows it up front (for a progress bar)."""
        return None

    def total_bytes(self) -> int | None:
        """The size in bytes, for sources read as one file."""
        return None

    def items(self, start: int = 1) -> Iterator[Item]:
        """Genesis, blocks from ``start`` (sources may yield earlier ones too), checkpoints."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files, databases and connections."""


# ============================================================================ bundles


_LEN = struct.Struct(">I")
_BLOCK_KEY = canonical("block")
_ENTRIES_KEY = canonical("entries")
_HEADER_KEY = canonical("header")
_SIG_KEY = canonical("sig")


def _array_head(n: int) -> bytes:
    # MessagePack's smallest array family (DESIGN §2 canonical encoding).
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def split_block_frame(data: bytes) -> tuple[dict[str, Any], list[bytes]] | None:
    """Decode a ``{"block": {entries, header, sig}}`` frame, keeping each entry's own bytes.

    The strict decoder (``ledger.encoding.decode``) proves a frame canonical by encoding it
    again, which costs as much as the rest of an entry's checks but its signature. Here the
    frame is unpacked by msgpack's C unpacker, and canonicity is proved piece by piece
    instead: the header and the signature are re-encoded (small), the frame must be exactly
    the canonical shell around the pieces, and each entry's bytes are returned so that the
    caller compares ``H(0x00 || bytes)`` with the leaf the chain verifier computed from the
    canonical encoding (equal hashes, equal bytes). Anything of another shape returns None,
    and the caller falls back to the strict decoder.
    """
    try:
        up = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1,
                              ext_hook=_refuse_ext, timestamp=0)
        up.feed(data)
        if up.read_map_header() != 1 or up.unpack() != "block":
            return None
        if up.read_map_header() != 3 or up.unpack() != "entries":
            return None
        n = up.read_array_header()
        first = up.tell()
        entries, slices = [], []
        at = first
        for _ in range(n):
            entries.append(up.unpack())
            end = up.tell()
            slices.append(data[at:end])
            at = end
        if up.unpack() != "header":
            return None
        h0 = up.tell()
        header = up.unpack()
        h1 = up.tell()
        if up.unpack() != "sig":
            return None
        sig = up.unpack()
        if up.tell() != len(data) or not isinstance(header, dict) or not isinstance(sig, bytes):
            return None
        shell = (b"\x81" + _BLOCK_KEY + b"\x83" + _ENTRIES_KEY + _array_head(n))
        if data[: first] != shell or canonical(header) != data[h0:h1] \
                or data[h1:] != _SIG_KEY + canonical(sig) or data[at : h0] != _HEADER_KEY:
            return None
    except (msgpack.UnpackException, ValueError, TypeError, EncodingError, RecursionError):
        return None
    return {"header": header, "sig": sig, "entries": entries}, slices


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"ext type {code}")


class BundleSource(ChainSource):
    """A chain bundle file (DESIGN §2), streamed frame by frame in constant memory.

    The framing and order rules are those of ``ledger.bundle``; unlike its reader, a block
    out of order is reported (naming the height that is missing or misplaced) and reading
    goes on, so the chain verifier can say what else is broken. A frame that cannot be read
    at all (truncated, over-long, not canonical) ends the bundle.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = f"bundle {self.path}"
        try:
            self._file: BinaryIO = self.path.open("rb")
        except OSError as exc:
            raise SourceUnopenable(f"cannot open bundle {self.path}: {exc.strerror}") from None
        try:
            self._size = self.path.stat().st_size
        except OSError:
            self._size = 0

    def total_bytes(self) -> int | None:
        return self._size

    def _read(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = self._file.read(n - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def items(self, start: int = 1) -> Iterator[Item]:
        offset, want, in_checkpoints = 0, 0, False
        while True:
            head = self._read(4)
            if not head:
                if want == 0:
                    yield Item("damage", damage=Damage(None, "empty bundle: no genesis frame",
                                                       fatal=True))
                return
            where = f"(frame at byte offset {offset})"
            if len(head) < 4:
                yield self._fatal(want, f"truncated length: {len(head)} of 4 bytes {where}")
                return
            (length,) = _LEN.unpack(head)
            if not 0 < length <= MAX_FRAME:
                yield self._fatal(want, f"frame length {length} outside 1 … {MAX_FRAME} {where}")
                return
            data = self._read(length)
            if len(data) < length:
                yield self._fatal(want, f"truncated frame: {len(data)} of {length} bytes {where}")
                return
            size, frame_at = 4 + length, offset
            offset += size
            fast = split_block_frame(data) if want > 0 and not in_checkpoints else None
            if fast is not None:
                block, slices = fast
                obj: Any = {"block": block}
            else:
                slices = None
                try:
                    obj = decode(data, max_size=MAX_FRAME)
                except EncodingError as exc:
                    yield self._fatal(want, f"frame is not canonical: {exc.detail} {where}")
                    return
            keys = set(obj) if isinstance(obj, dict) else set()
            if want == 0:
                if keys != {"block", "consortium"}:
                    yield self._fatal(0, f"the first frame must be {{block, consortium}} {where}")
                    return
                want = 1
                yield Item("genesis", obj, size=size)
            elif keys == {"block"} and not in_checkpoints:
                block = obj["block"]
                header = block.get("header") if isinstance(block, dict) else None
                height = header.get("height") if isinstance(header, dict) else None
                if height != want:
                    if isinstance(height, int) and not isinstance(height, bool) \
                            and height > want:
                        missing = (f"block {want}" if height == want + 1
                                   else f"blocks {want}..{height - 1}")
                        what = f"{missing} missing: block {height} follows block {want - 1}"
                        # Resynchronise on what the file holds: one deleted block is one
                        # problem, not one at every later height.
                        damaged, want = want, height
                    else:
                        what = (f"block {height!r} out of order: found after block "
                                f"{want - 1}, where block {want} belongs")
                        damaged, want = want, want - 1
                    yield Item("damage", damage=Damage(damaged, f"{what} {where}"))
                want += 1
                yield Item("block", block, size=size, raw=slices, offset=frame_at)
            elif keys == {"checkpoint", "signatures"}:
                in_checkpoints = True
                if not isinstance(obj["signatures"], list):
                    yield Item("damage", damage=Damage(None, f"checkpoint signatures are not a "
                                                             f"list {where}"))
                    continue
                yield Item("checkpoint", obj, size=size)
            elif keys == {"block"}:
                yield Item("damage", damage=Damage(None, f"a block after the checkpoints "
                                                         f"{where}"))
            else:
                yield self._fatal(want, f"unknown frame with keys {sorted(keys)} {where}")
                return

    @staticmethod
    def _fatal(height: int, what: str) -> Item:
        return Item("damage", damage=Damage(height, what, fatal=True))

    def close(self) -> None:
        self._file.close()


# ============================================================================ data dirs

_CHECK = 8
_U64 = struct.Struct(">Q")


def ledger_dir(path: Path) -> Path:
    """The LevelDB ledger store under a node's ``data_dir`` (``<data_dir>/ledger``, as the node
    lays it out), or ``path`` itself when it is the store."""
    if not (path / "CURRENT").exists() and (path / "ledger" / "CURRENT").exists():
        return path / "ledger"
    return path


class DataDirSource(ChainSource):
    """A stopped node's LevelDB data dir, read record by record.

    The records are read raw, in the layout ``ledger/store.py`` documents in its module doc
    (``Mconsortium``, ``Mhead``, ``B<height>`` = ``{header, sig}``, ``X<leaf>`` = envelope,
    ``K<height>`` = ``{checkpoint, signatures}``), rather than through ``LedgerStore``'s
    checked reads: those stop at the first damaged record, while an auditor must report every
    one and keep going, and must not lean on the store's own indexes or check values (anyone
    who edits the files can recompute those). The chain verifier checks the content.
    """

    def __init__(self, path: Path) -> None:
        import plyvel

        self.path = ledger_dir(Path(path))
        self.name = f"data dir {Path(path)}"
        if not (self.path / "CURRENT").exists():
            raise SourceUnopenable(f"{self.path} is not a ledger data dir (no LevelDB there)")
        try:
            self._db = plyvel.DB(str(self.path), create_if_missing=False, paranoid_checks=True)
        except plyvel.IOError as exc:
            raise SourceUnopenable(
                f"cannot open the data dir {self.path} (is its node still running? --data "
                f"needs it stopped; use --node otherwise): {exc}"
            ) from None
        except plyvel.CorruptionError as exc:
            # Damage found by LevelDB's own checksums: the data under audit is bad (exit 1).
            self._db = None
            self._open_damage: str | None = f"LevelDB reports damage: {exc}"
            return
        except plyvel.Error as exc:
            raise SourceUnopenable(f"cannot open the data dir {self.path}: {exc}") from None
        self._open_damage = None
        self._head: int | None = None

    def _get(self, key: bytes) -> bytes | None:
        import plyvel

        try:
            value: bytes | None = self._db.get(key, verify_checksums=True)
        except plyvel.CorruptionError as exc:
            raise _RecordDamage(f"LevelDB reports damage in record {key[:1]!r}: {exc}") from None
        return value

    def _sealed(self, key: bytes, what: str) -> bytes | None:
        raw = self._get(key)
        if raw is None:
            return None
        value, check = raw[:-_CHECK], raw[-_CHECK:]
        if len(raw) < _CHECK or hashlib.sha256(key + value).digest()[:_CHECK] != check:
            raise _RecordDamage(f"the stored {what} fails its check value")
        return value

    def _decoded(self, raw: bytes, what: str) -> Any:
        try:
            return decode(raw)
        except EncodingError as exc:
            raise _RecordDamage(f"the stored {what} does not decode: {exc.detail}") from None

    def total_blocks(self) -> int | None:
        if self._db is None:
            return None
        try:
            raw = self._sealed(b"Mhead", "head record")
            head = self._decoded(raw, "head record") if raw is not None else None
        except _RecordDamage:
            return None
        height = head.get("height") if isinstance(head, dict) else None
        return height if isinstance(height, int) else None

    def items(self, start: int = 1) -> Iterator[Item]:
        if self._db is None:
            yield Item("damage", damage=Damage(None, self._open_damage or "damaged", fatal=True))
            return
        try:
            raw = self._sealed(b"Mconsortium", "consortium map")
            if raw is None:
                raise _RecordDamage("the store holds no consortium map")
            consortium = self._decoded(raw, "consortium map")
            gen = self._get(b"B" + _U64.pack(0))
            if gen is None:
                raise _RecordDamage("the store holds no genesis block")
            g = self._decoded(gen, "genesis block")
            if not isinstance(g, dict):
                raise _RecordDamage("the stored genesis block is not a map")
            genesis_block: dict[str, Any] = {
                "header": g.get("header"), "sig": g.get("sig"), "entries": []
            }
        except _RecordDamage as exc:
            yield Item("damage", damage=Damage(0, str(exc), fatal=True))
            return
        yield Item("genesis", {"block": genesis_block, "consortium": consortium})
        head = self.total_blocks()
        if head is None:
            yield Item("damage", damage=Damage(None, "the head record is missing or damaged"))
            head = self._last_block_key()
        height = 1
        while height <= head:
            try:
                block = self._block(height)
            except _RecordDamage as exc:
                yield Item("damage", damage=Damage(height, str(exc)))
            else:
                if block is None:
                    yield Item("damage", damage=Damage(height, f"block {height} is missing"))
                else:
                    named = block["header"].get("height") if isinstance(
                        block["header"], dict) else None
                    if named != height:
                        yield Item("damage", damage=Damage(
                            height, f"the record of block {height} holds block {named!r} "
                            "(misplaced)"))
                    raws = block.pop("_raw")
                    yield Item("block", block, raw=raws)
            height += 1
        if self._get(b"B" + _U64.pack(head + 1)) is not None:
            yield Item(
                "damage",
                damage=Damage(head + 1, f"blocks above the head record's height {head}"),
            )
        yield from self._checkpoints()

    def _last_block_key(self) -> int:
        with self._db.iterator(prefix=b"B", reverse=True, include_value=False) as it:
            for key in it:
                return int(_U64.unpack(key[1:])[0])
        return 0

    def _block(self, height: int) -> dict[str, Any] | None:
        raw = self._get(b"B" + _U64.pack(height))
        if raw is None:
            return None
        obj = self._decoded(raw, f"block {height}")
        if not isinstance(obj, dict) or set(obj) != {"header", "sig"}:
            raise _RecordDamage(f"the stored block {height} is not {{header, sig}}")
        header = obj["header"]
        first = header.get("first_index") if isinstance(header, dict) else None
        size = header.get("tree_size") if isinstance(header, dict) else None
        entries: list[Any] = []
        raws: list[bytes] = []
        if isinstance(first, int) and isinstance(size, int) and 0 <= first <= size:
            if size - first > 1_000_000:
                raise _RecordDamage(f"the stored header {height} claims {size - first} entries")
            for leaf in range(first, size):
                data = self._get(b"X" + _U64.pack(leaf))
                if data is None:
                    raise _RecordDamage(f"entry {leaf} of block {height} is missing")
                entries.append(_unpack_entry(data, leaf))
                raws.append(data)
        return {"header": header, "sig": obj["sig"], "entries": entries, "_raw": raws}

    def _checkpoints(self) -> Iterator[Item]:
        with self._db.iterator(prefix=b"K", include_value=False) as it:
            keys = list(it)
        for key in keys:
            height = int(_U64.unpack(key[1:])[0])
            try:
                raw = self._sealed(key, f"checkpoint at height {height}")
                obj = self._decoded(raw or b"", f"checkpoint at height {height}")
                if not isinstance(obj, dict) or set(obj) != {"checkpoint", "signatures"}:
                    raise _RecordDamage(f"the stored checkpoint at height {height} is malformed")
            except _RecordDamage as exc:
                yield Item("damage", damage=Damage(height, str(exc)))
                continue
            yield Item("checkpoint", obj)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _unpack_entry(data: bytes, leaf: int) -> Any:
    """An entry record decoded by msgpack's C unpacker; its canonicity is proved by the
    caller from its leaf hash (see ``node.auditor``), as for bundle frames."""
    try:
        return msgpack.unpackb(data, raw=False, ext_hook=_refuse_ext, timestamp=0)
    except (msgpack.UnpackException, ValueError, TypeError, RecursionError) as exc:
        raise _RecordDamage(f"the stored entry {leaf} does not decode: {exc}") from None


class _RecordDamage(Exception):
    """A record of the data dir that is missing, fails its check or does not decode."""


# ============================================================================ nodes


class NodeClient:
    """A thin client of a node's internal API (DESIGN §5), errors mapped at this boundary.

    Transport failures are :class:`NodeUnreachable`; 401/403 are :class:`SourceUnopenable`
    (the token is the auditor's to fix); 404 returns None; anything else the node says wrong
    is :class:`LedgerError`-free data the caller judges.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def get(self, path: str, *, params: dict[str, Any] | None = None,
            msgpack: bool = False) -> Any:
        """GET ``path``: the decoded JSON (or canonical msgpack) body, None on 404."""
        import httpx

        accept = "application/msgpack" if msgpack else "application/json"
        try:
            resp = self._http.get(path, params=params, headers={"Accept": accept})
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"node {self.url} is unreachable: {exc}") from None
        if resp.status_code in (401, 403):
            raise SourceUnopenable(
                f"node {self.url} refused the read ({resp.status_code}): give an identity's "
                "bearer token with --token FILE"
            )
        if resp.status_code == 404:
            return None
        if resp.status_code >= 500:
            raise NodeUnreachable(f"node {self.url} answered {resp.status_code}: {resp.text[:200]}")
        if resp.status_code >= 400:
            raise SourceUnopenable(
                f"node {self.url} refused {path} ({resp.status_code}): {resp.text[:200]}"
            )
        if msgpack:
            try:
                return decode(resp.content)
            except EncodingError as exc:
                return _BadAnswer(f"the node's answer is not canonical: {exc.detail}")
        try:
            return resp.json()
        except ValueError:
            return _BadAnswer("the node's answer is not JSON")

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


@dataclass(frozen=True)
class _BadAnswer:
    """A node answer that did not parse: data under audit that is bad, not an exception."""

    what: str


def read_token(path: Path | None) -> str | None:
    """The bearer token in ``path`` (first line, stripped), or None."""
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceUnopenable(f"cannot read the token file {path}: {exc}") from None


class NodeSource(ChainSource):
    """A running node's internal API: ``/v1/head``, ``/v1/blocks/{h}``, ``/v1/checkpoints``.

    The genesis item comes from ``/v1/genesis`` (the bundle's first frame: genesis block and
    consortium map), so a chain id alone pins it; a node without that route yields the genesis
    block with ``consortium`` None, and the map must come from ``--consortium``. Blocks are
    fetched one at a time as canonical msgpack; checkpoints by each block's tree size.
    """

    def __init__(self, url: str, token: str | None = None) -> None:
        self.client = NodeClient(url, token)
        self.name = f"node {self.client.url}"
        head = self.client.get("/v1/head")
        if not isinstance(head, dict) or not isinstance(head.get("height"), int):
            raise NodeUnreachable(f"node {self.client.url} did not answer /v1/head sensibly")
        self._head: int = head["height"]

    def total_blocks(self) -> int | None:
        return self._head

    def items(self, start: int = 1) -> Iterator[Item]:
        frame = self.client.get("/v1/genesis", msgpack=True)
        if isinstance(frame, dict) and set(frame) == {"block", "consortium"}:
            yield Item("genesis", frame)
        else:
            genesis = self.client.get("/v1/blocks/0", msgpack=True)
            if not isinstance(genesis, dict):
                what = genesis.what if isinstance(genesis, _BadAnswer) else "no genesis block"
                yield Item("damage", damage=Damage(0, what, fatal=True))
                return
            yield Item("genesis", {"block": genesis, "consortium": None})
        sizes: list[tuple[int, int]] = []
        for height in range(max(start, 1), self._head + 1):
            block = self.client.get(f"/v1/blocks/{height}", msgpack=True)
            if isinstance(block, _BadAnswer):
                yield Item("damage", damage=Damage(height, block.what))
                continue
            if block is None:
                yield Item("damage", damage=Damage(height, f"the node has no block {height}"))
                continue
            header = block.get("header") if isinstance(block, dict) else None
            if isinstance(header, dict) and isinstance(header.get("tree_size"), int):
                sizes.append((height, header["tree_size"]))
            yield Item("block", block)
        for height, size in sizes:
            got = self.client.get(f"/v1/checkpoints/{size}")
            if got is None:
                continue
            try:
                cf = from_file(got)
            except (CheckpointError, LedgerError) as exc:
                yield Item("damage", damage=Damage(height, f"checkpoint file: {exc}"))
                continue
            yield Item("checkpoint", {"checkpoint": cf.checkpoint, "signatures": cf.signatures})

    def close(self) -> None:
        self.client.close()


def open_source(
    *, bundle: Path | None, data: Path | None, node: str | None, token: Path | None
) -> ChainSource:
    """The one source named by exactly one of ``bundle``, ``data``, ``node``."""
    given = [x for x in (bundle, data, node) if x is not None]
    if len(given) != 1:
        raise SourceUnopenable("name exactly one of --bundle FILE, --data DIR, --node URL")
    if bundle is not None:
        return BundleSource(bundle)
    if data is not None:
        return DataDirSource(data)
    assert node is not None
    return NodeSource(node, read_token(token))


#: Frames larger than this are refused by the bundle reader (re-exported for tests).
BUNDLE_MAX_FRAME = MAX_FRAME
