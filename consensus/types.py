"""Raft's data: entries, messages, hard state, membership and the ``Ready`` hand-off.

Everything that crosses the wire or the disk is a dataclass whose fields are only ``int``,
``str``, ``bytes``, ``bool``, lists of those, or nested such dataclasses (a nested one may be
absent, ``None``, and is then omitted from the dict: DESIGN §2, "an absent field is omitted,
never nil"). Each has ``to_dict()`` and a strict ``from_dict()`` so the transport can frame
them with msgpack: a missing or extra key, or a value of the wrong type, raises
:class:`MalformedMessage` naming the field.

Entries are typed (DESIGN §3):

- ``normal``: opaque ``data`` (one block). The core never looks inside.
- ``noop``: the empty entry a new leader appends at the start of its term (Raft §5.4.2,
  §8: it lets the leader commit entries of earlier terms by committing one of its own).
- ``conf_change``: ``change`` is the parsed membership change the core acts on
  (``add_learner`` / ``promote`` / ``remove`` of one node id); ``data`` is the opaque block
  holding the ``membership`` entry that authorises it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

__all__ = [
    "ENTRY_CONF_CHANGE",
    "ENTRY_NOOP",
    "ENTRY_NORMAL",
    "CONF_ADD_LEARNER",
    "CONF_PROMOTE",
    "CONF_REMOVE",
    "ConfChange",
    "ConfState",
    "Entry",
    "HardState",
    "MalformedMessage",
    "Message",
    "MsgType",
    "ReadState",
    "Ready",
    "Role",
    "SnapshotMeta",
    "SoftState",
]

ENTRY_NORMAL = "normal"
ENTRY_NOOP = "noop"
ENTRY_CONF_CHANGE = "conf_change"
_ENTRY_TYPES = frozenset({ENTRY_NORMAL, ENTRY_NOOP, ENTRY_CONF_CHANGE})

CONF_ADD_LEARNER = "add_learner"
CONF_PROMOTE = "promote"
CONF_REMOVE = "remove"
_CONF_OPS = frozenset({CONF_ADD_LEARNER, CONF_PROMOTE, CONF_REMOVE})


class MalformedMessage(ValueError):
    """A dict (from the wire or the disk) does not describe a valid Raft value."""


class MsgType:
    """The message types on the wire. Names follow etcd raft's ``MsgApp``, ``MsgVote``, ..."""

    APP = "app"  # AppendEntries (Raft §5.3); also carries commit
    APP_RESP = "app_resp"  # its answer; on reject, a conflict hint (index + term)
    VOTE = "vote"  # RequestVote (Raft §5.2)
    VOTE_RESP = "vote_resp"
    PRE_VOTE = "pre_vote"  # PreVote (Raft thesis §9.6): asks "would you vote?" without a term bump
    PRE_VOTE_RESP = "pre_vote_resp"
    HEARTBEAT = "heartbeat"  # empty append carrying commit and a ReadIndex context
    HEARTBEAT_RESP = "heartbeat_resp"
    SNAP = "snap"  # "catch up to this snapshot": metadata only, the app moves the data
    TIMEOUT_NOW = "timeout_now"  # leadership transfer (Raft thesis §3.10)

    ALL: ClassVar[frozenset[str]] = frozenset(
        {
            APP,
            APP_RESP,
            VOTE,
            VOTE_RESP,
            PRE_VOTE,
            PRE_VOTE_RESP,
            HEARTBEAT,
            HEARTBEAT_RESP,
            SNAP,
            TIMEOUT_NOW,
        }
    )


class Role:
    """A node's role. ``pre_candidate`` is the PreVote phase of an election."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


T = TypeVar("T", bound="_Codec")


class _Codec:
    """Strict dict conversion shared by every wire/disk dataclass."""

    _hints_cache: ClassVar[dict[type, dict[str, Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        """Return a dict of plain values (nested dataclasses become dicts; ``None`` is omitted)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is None:
                continue
            out[f.name] = _encode(v)
        return out

    @classmethod
    def from_dict(cls: type[T], d: object) -> T:
        """Build an instance from ``d``, refusing anything that does not fit exactly."""
        if not isinstance(d, dict):
            raise MalformedMessage(f"{cls.__name__}: expected a map, got {type(d).__name__}")
        hints = _hints(cls)
        extra = set(d) - set(hints)
        if extra:
            raise MalformedMessage(f"{cls.__name__}: unknown field(s) {sorted(map(str, extra))}")
        kwargs: dict[str, Any] = {}
        for name, tp in hints.items():
            if name not in d:
                if _optional_inner(tp) is not None:
                    kwargs[name] = None
                    continue
                raise MalformedMessage(f"{cls.__name__}: missing field {name!r}")
            kwargs[name] = _decode(tp, d[name], f"{cls.__name__}.{name}")
        obj = cls(**kwargs)
        obj._validate()
        return obj

    def _validate(self) -> None:
        """Check cross-field rules after decoding; subclasses extend."""


def _hints(cls: type) -> dict[str, Any]:
    cached = _Codec._hints_cache.get(cls)
    if cached is None:
        all_hints = typing.get_type_hints(cls)
        cached = {f.name: all_hints[f.name] for f in dataclasses.fields(cls)}
        _Codec._hints_cache[cls] = cached
    return cached


def _optional_inner(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _encode(v: Any) -> Any:
    if isinstance(v, _Codec):
        return v.to_dict()
    if isinstance(v, list):
        return [_encode(x) for x in v]
    return v


def _decode(tp: Any, v: object, where: str) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        tp = inner
    if tp is bool:
        if not isinstance(v, bool):
            raise MalformedMessage(f"{where}: expected bool")
        return v
    if tp is int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise MalformedMessage(f"{where}: expected int")
        if v < 0:
            raise MalformedMessage(f"{where}: must not be negative")
        return v
    if tp is str:
        if not isinstance(v, str):
            raise MalformedMessage(f"{where}: expected str")
        return v
    if tp is bytes:
        if not isinstance(v, bytes | bytearray):
            raise MalformedMessage(f"{where}: expected bytes")
        return bytes(v)
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if not isinstance(v, list | tuple):
            raise MalformedMessage(f"{where}: expected a list")
        return [_decode(item, x, f"{where}[{i}]") for i, x in enumerate(v)]
    if isinstance(tp, type) and issubclass(tp, _Codec):
        try:
            return tp.from_dict(v)
        except MalformedMessage as e:
            raise MalformedMessage(f"{where}: {e}") from None
    raise MalformedMessage(f"{where}: unsupported type {tp!r}")  # pragma: no cover


@dataclass(slots=True)
class ConfChange(_Codec):
    """One single-server membership change (Raft thesis §4.1): ``op`` on node ``node``."""

    op: str
    node: str

    def _validate(self) -> None:
        if self.op not in _CONF_OPS:
            raise MalformedMessage(f"ConfChange.op: {self.op!r} is not one of {sorted(_CONF_OPS)}")
        if not self.node:
            raise MalformedMessage("ConfChange.node: empty node id")


@dataclass(slots=True)
class Entry(_Codec):
    """One Raft log entry. ``change`` is present exactly when ``type`` is ``conf_change``."""

    term: int
    index: int
    type: str = ENTRY_NORMAL
    data: bytes = b""
    change: ConfChange | None = None

    def _validate(self) -> None:
        if self.type not in _ENTRY_TYPES:
            raise MalformedMessage(f"Entry.type: {self.type!r} is not a known entry type")
        if (self.type == ENTRY_CONF_CHANGE) != (self.change is not None):
            raise MalformedMessage("Entry.change: present if and only if type is conf_change")
        if self.type == ENTRY_NOOP and self.data:
            raise MalformedMessage("Entry.data: a noop entry carries no data")

    def size(self) -> int:
        """Bytes this entry counts for in message-size and in-flight limits."""
        return len(self.data) + 16


@dataclass(slots=True)
class ConfState(_Codec):
    """The membership in force: voting members and non-voting learners (sorted ids)."""

    voters: list[str] = field(default_factory=list)
    learners: list[str] = field(default_factory=list)

    def _validate(self) -> None:
        if set(self.voters) & set(self.learners):
            raise MalformedMessage("ConfState: a node is both voter and learner")

    def copy(self) -> ConfState:
        """An independent copy."""
        return ConfState(list(self.voters), list(self.learners))


@dataclass(slots=True)
class SnapshotMeta(_Codec):
    """Where the log was compacted: the last index and term it covers, and the membership then.

    The snapshot's *data* is the application's own state (the ledger's stored blocks up to
    ``index``); the core only ever handles this metadata.
    """

    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)


@dataclass(slots=True)
class HardState(_Codec):
    """What must survive a crash: current term, vote in that term, and the commit index.

    ``term`` and ``vote`` must be on disk before any message that depends on them leaves
    (Raft §5.2, Figure 2 "persistent state"); ``commit`` may lag (it can be relearned).
    """

    term: int = 0
    vote: str = ""
    commit: int = 0


@dataclass(slots=True)
class Message(_Codec):
    """A Raft message between two nodes. Unused fields keep their zero value.

    - ``log_term``/``index``: for ``app`` the entry preceding ``entries``; for votes the
      candidate's last entry; for a rejected ``app_resp`` the follower's conflict hint.
    - ``reject_hint``: on a rejected ``app_resp``, the follower's hint index.
    - ``context``: the ReadIndex request id on heartbeats, or ``b"transfer"`` on a vote that a
      leadership transfer forced.
    - ``snapshot``: on ``snap``, the metadata the follower must catch up to.
    """

    type: str
    frm: str
    to: str
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None

    def _validate(self) -> None:
        if self.type not in MsgType.ALL:
            raise MalformedMessage(f"Message.type: {self.type!r} is not a known message type")
        if self.type == MsgType.SNAP and self.snapshot is None:
            raise MalformedMessage("Message.snapshot: a snap message needs its metadata")


@dataclass(slots=True)
class ReadState(_Codec):
    """A confirmed ReadIndex: once the app has applied ``index``, the read ``context`` may run."""

    index: int
    context: bytes


@dataclass(slots=True)
class SoftState:
    """Volatile state worth telling the runtime about: who leads, and this node's role."""

    leader: str
    role: str


@dataclass(slots=True)
class Ready:
    """Everything the runtime must do, in this order (see :mod:`consensus`):

    1. ``snapshot``: if set, the application catches its own data up to ``snapshot.index``
       (a verified transfer of stored blocks from a peer), then storage records it.
    2. ``hard_state`` and ``entries``: write them (``entries`` replace any stored entry at
       index ≥ ``entries[0].index``); if ``must_sync`` is true, fsync before going on.
    3. ``messages``: send them, only now (persist before send).
    4. ``committed_entries``: apply them in order; ``read_states`` may be answered once the
       application has applied their index.
    5. call ``advance(ready)``.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: SnapshotMeta | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    must_sync: bool = False
