"""Wire form of Raft values: to_dict/from_dict round-trip and strict refusal."""

from __future__ import annotations

import msgpack
import pytest

from consensus.types import (
    ConfChange,
    ConfState,
    Entry,
    HardState,
    MalformedMessage,
    Message,
    MsgType,
    SnapshotMeta,
)


def _full_message() -> Message:
    return Message(
        MsgType.APP,
        "n1",
        "n2",
        term=3,
        log_term=2,
        index=7,
        entries=[
            Entry(3, 8, "normal", b"block"),
            Entry(3, 9, "noop"),
            Entry(3, 10, "conf_change", b"m", ConfChange("add_learner", "n4")),
        ],
        commit=6,
        context=b"r1",
    )


def test_round_trip_through_msgpack() -> None:
    for m in (
        _full_message(),
        Message(MsgType.SNAP, "n1", "n3", term=2, snapshot=SnapshotMeta(9, 2, ConfState(["n1"]))),
        Message(MsgType.APP_RESP, "n2", "n1", term=3, index=5, reject=True, reject_hint=4),
    ):
        wire = msgpack.packb(m.to_dict(), use_bin_type=True)
        back = Message.from_dict(msgpack.unpackb(wire, raw=False))
        assert back == m


def test_absent_optional_fields_are_omitted_not_nil() -> None:
    d = Entry(1, 1).to_dict()
    assert "change" not in d
    assert None not in d.values()
    assert "snapshot" not in Message(MsgType.HEARTBEAT, "a", "b").to_dict()


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda d: d.pop("frm"), "missing field 'frm'"),
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d.update(term="3"), "Message.term: expected int"),
        (lambda d: d.update(term=-1), "must not be negative"),
        (lambda d: d.update(reject=1), "Message.reject: expected bool"),
        (lambda d: d.update(type="nope"), "not a known message type"),
        (lambda d: d["entries"][0].update(type="weird"), "not a known entry type"),
        (lambda d: d["entries"][0].update(data="text"), "expected bytes"),
        (lambda d: d["entries"][2].pop("change"), "present if and only if"),
        (lambda d: d["entries"][1].update(data=b"x"), "noop entry carries no data"),
        (lambda d: d["entries"][2]["change"].update(op="join"), "ConfChange.op"),
        (lambda d: d.update(entries={}), "expected a list"),
        (lambda d: d.update(type=MsgType.SNAP), "needs its metadata"),
    ],
)
def test_malformed_dicts_are_refused(mutate: object, where: str) -> None:
    d = _full_message().to_dict()
    mutate(d)  # type: ignore[operator]
    with pytest.raises(MalformedMessage, match=where):
        Message.from_dict(d)


def test_not_a_map() -> None:
    with pytest.raises(MalformedMessage, match="expected a map"):
        HardState.from_dict([1, 2])
    with pytest.raises(MalformedMessage, match="both voter and learner"):
        ConfState.from_dict({"voters": ["a"], "learners": ["a"]})
