"""``courtledger node backup|restore`` (DESIGN §4): blocks and checkpoints, never Raft state.

* ``node backup --config F --out FILE`` (node stopped: LevelDB is single-process) writes the
  node's ledger as a chain bundle (DESIGN §2 "Chain bundles"): the genesis frame, every block,
  every cosigned checkpoint. The Raft log and hard state (term, vote) are deliberately left out.
* ``node restore --config F --from FILE`` rebuilds ``<data_dir>/ledger`` from a bundle,
  **verifying every block** exactly as apply does (validity, hash link, proposer signature,
  Merkle root) and every checkpoint against a quorum of the voters in force, so a damaged or
  forged backup is refused before anything is written. It refuses a data dir that still holds a
  ledger or any Raft state: a restored node rejoins with **empty Raft state** and catches up
  from the log or by verified block transfer (DESIGN §3).

Voting twice in one term (Raft §5.2 requires at most one vote per term, made durable before
answering): a node whose Raft state is lost no longer knows whom it voted for. ``restore``
writes ``<data_dir>/RESTORED`` with a **term floor**, the highest term named by any restored
block header; the node (``node/raftlink.py``) then withholds every vote and pre-vote until it
has heard from a leader, and never votes in a term at or below the highest term it saw up to
then, removing the marker once its own durable term has moved past that floor.
Every vote it casts from then on is in a term it has never voted in before the restore,
unless it voted before the loss in a term higher than any it sees afterwards (a candidate that
failed and was never heard of again); the operations guide says to restore only after the
cluster elected a leader without this node, which rules that out in practice. A restored node
also waits, before voting or campaigning, until its Raft log holds what the first leader it
heard held (``CATCHING_UP`` marker): its old acknowledgements may have been counted towards
commits (Raft §5.4), and its backup may be older than them.

A node started with its LevelDB folders gone but its data dir kept (no restore) is told from a
genuine first start by :data:`HAS_RUN_MARKER` (:func:`start_kind`) and put under the same
guards: it writes the ``RESTORED`` marker itself (``cause: wiped``) and catches up from the
leader (node/raftlink.py, "lost Raft state").
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO, Literal

import click

from ledger.bundle import read_bundle, write_store_bundle
from ledger.checkpoints import check_checkpoint, verify_checkpoint_signatures
from ledger.errors import LedgerError
from ledger.genesis import Genesis, genesis_header_is
from ledger.store import LedgerStore

__all__ = ["CATCHUP_MARKER", "HAS_RUN_MARKER", "RESTORED_MARKER", "StartKind", "backup_command",
           "ingest_block", "ingest_checkpoint", "mark_has_run", "mark_wiped", "read_marker",
           "restore_bundle", "restore_command", "start_kind", "write_marker"]

RESTORED_MARKER = "RESTORED"
#: Written (durably) before the node's first Raft message that depends on stored Raft state
#: (a vote, an acknowledgement), and kept for the data dir's life, outside the LevelDB folders:
#: a node that finds its Raft storage empty while this file is there has run before (it may
#: have voted and acknowledged entries) and lost its storage.
HAS_RUN_MARKER = "HAS_RUN"
#: While present, a node that lost its Raft state is still catching up to what the first leader
#: it heard held: ``{"term": T, "index": C}`` (see node/raftlink.py, "the catch-up guard").
CATCHUP_MARKER = "CATCHING_UP"

#: How a node's Raft state stands at start (:func:`start_kind`).
StartKind = Literal["first", "resume", "restored", "wiped"]


def start_kind(data_dir: Path, *, raft_empty: bool, ledger_height: int) -> StartKind:
    """Decide, at start, whether this is a genuine first start or a node that lost its state.

    * ``restored``: ``node restore`` left its marker (or an earlier wiped start did, below) and
      the guard it stands for has not been lifted yet: it outlives restarts.
    * ``wiped``: the Raft storage (hard state and log) is empty although the node has run: the
      :data:`HAS_RUN_MARKER` is there, or the ledger holds blocks (a ledger without a Raft log
      only comes from a node that ran, or from ``restore``, which leaves its own marker).
      Such a node may have voted in terms it no longer knows (Raft §5.2 allows one vote per
      term, remembered on stable storage) and acknowledged entries a leader counted towards a
      commit (§5.4): it must not come back as if new.
    * ``first``: empty Raft storage and no sign of a past: the node made by ``init`` (or by an
      operator for a new consortium) starting for the first time. At genesis every node is
      in this state and they elect a leader normally.
    * ``resume``: Raft state on disk; the hard state remembers every vote.

    A data dir lost *as a whole* (marker included) cannot be told from a new one here; the
    leader, which counted its acknowledgements, tells it so (node/raftlink.py ``_on_rejoin``),
    and ``courtledger node restore`` is the path for it: see docs/operations.md.
    """
    if (data_dir / RESTORED_MARKER).exists():
        return "restored"
    if raft_empty and ((data_dir / HAS_RUN_MARKER).exists() or ledger_height > 0):
        return "wiped"
    return "first" if raft_empty else "resume"


def write_marker(path: Path, value: dict[str, Any]) -> None:
    """Write a small JSON marker durably: temp file, fsync, rename, fsync of the folder (so a
    power loss leaves either the old marker or the new one, never a torn or missing one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(value, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_wiped(data_dir: Path, term_floor: int) -> None:
    """Record, durably, that this node lost its Raft state after it had run: the restore
    guards with ``term_floor`` and a catch-up target still to be fixed by the first leader
    heard (node/raftlink.py). Both markers outlive restarts until the guards lift."""
    write_marker(data_dir / RESTORED_MARKER, {"term_floor": term_floor, "cause": "wiped"})
    write_marker(data_dir / CATCHUP_MARKER, {"pending": True})


def mark_has_run(data_dir: Path, node_id: str) -> None:
    """Record, durably and once, that this data dir's node has spoken Raft."""
    path = data_dir / HAS_RUN_MARKER
    if not path.exists():
        write_marker(path, {"node": node_id, "since_ms": int(time.time() * 1000)})


def ingest_block(chain: Any, block: Any, raft_index: int = 0) -> tuple[bytes, list[bytes]]:
    """Verify ``block`` on ``chain``'s head as apply does, then write it; raise LedgerError."""
    bhash, ids = chain.check(block)
    chain.append(block, bhash, ids, raft_index)
    return bhash, ids


def ingest_checkpoint(chain: Any, cp: Any, sigs: Any) -> bool:
    """Keep a checkpoint of a block we hold if it describes our block and has a quorum of the
    voters in force at its height; False (nothing stored) otherwise."""
    check_checkpoint(cp)
    h = cp["height"]
    if h > chain.height or cp != chain.checkpoint_body(h):
        return False
    valid = verify_checkpoint_signatures(cp, sigs, chain.voters_at(h))
    if len(valid) < chain.quorum_at(h):
        return False
    chain.put_checkpoint(cp, [s for s in sigs if s.get("node") in valid])
    return True


def read_marker(data_dir: Path, name: str = RESTORED_MARKER) -> dict[str, Any] | None:
    """The restore marker (or another JSON marker ``name``) of a data dir, or None."""
    p = data_dir / name
    if not p.exists():
        return None
    try:
        value = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"term_floor": 1 << 62}  # unreadable: withhold votes (the safe side)
    return value if isinstance(value, dict) else {"term_floor": 1 << 62}


def restore_bundle(src: BinaryIO, data_dir: Path, genesis: Genesis) -> dict[str, int]:
    """Rebuild ``<data_dir>/ledger`` from a bundle; refuse a data dir with a ledger or Raft
    state. Returns ``{"height", "checkpoints", "term_floor"}``."""
    from node.chain import Chain

    for sub in ("ledger", "raft"):
        p = data_dir / sub
        if p.exists() and any(p.iterdir()):
            raise click.ClickException(
                f"{p} is not empty: restore writes only into a data dir without ledger or Raft "
                "state (move it away first; Raft state is never restored, DESIGN §4)")
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / "ledger.restoring"
    if tmp.exists():
        shutil.rmtree(tmp)
    chain = Chain(LedgerStore.open(tmp, genesis, create=True), genesis)
    checkpoints = 0
    floor = 0
    try:
        for frame in read_bundle(src):
            if frame.kind == "genesis":
                if not genesis_header_is(genesis, frame.value["block"]["header"]):
                    raise click.ClickException("the backup is of another chain (genesis differs)")
            elif frame.kind == "block":
                ingest_block(chain, frame.value["block"])
                floor = max(floor, int(frame.value["block"]["header"]["term"]))
            elif ingest_checkpoint(chain, frame.value["checkpoint"],
                                   frame.value["signatures"]):
                checkpoints += 1
            else:
                raise click.ClickException(
                    f"backup refused, nothing restored: the checkpoint at height "
                    f"{frame.value['checkpoint'].get('height')} is not of the restored blocks "
                    "or lacks a quorum of voter signatures")
        height = chain.height
    except LedgerError as exc:
        chain.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise click.ClickException(f"backup refused, nothing restored: {exc.diagnostics()}"
                                   ) from None
    except BaseException:
        chain.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    chain.close()
    write_marker(data_dir / RESTORED_MARKER, {"term_floor": floor, "cause": "restore"})
    tmp.rename(data_dir / "ledger")
    return {"height": height, "checkpoints": checkpoints, "term_floor": floor}


def _config(path: Path) -> Any:
    from node.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("backup")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="The node's config file (the node must be stopped).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="The backup file (a chain bundle; not overwritten).")
def backup_command(config_path: Path, out: Path) -> None:
    """Back up the node's blocks and checkpoints (never its Raft state) as a chain bundle."""
    from ledger.genesis import load_genesis

    cfg = _config(config_path)
    if out.exists():
        raise click.ClickException(f"{out} exists; a backup is never overwritten")
    try:
        genesis = load_genesis(cfg.genesis)
        store = LedgerStore.open(cfg.data_dir / "ledger", genesis)
    except LedgerError as exc:
        raise click.ClickException(
            f"cannot open the ledger (is the node stopped?): {exc.detail}") from None
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            write_store_bundle(store, f)
            f.flush()
        height = store.head()[0]
    finally:
        store.close()
    tmp.replace(out)
    click.echo(f"backed up blocks 0…{height} and their checkpoints to {out}")


@click.command("restore")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="The node's config file (its data_dir must hold no ledger or Raft state).")
@click.option("--from", "src", required=True, type=click.Path(path_type=Path),
              help="A backup made by `courtledger node backup` (or `export`).")
def restore_command(config_path: Path, src: Path) -> None:
    """Restore blocks and checkpoints, verified; Raft state starts empty and catches up."""
    from ledger.genesis import load_genesis

    cfg = _config(config_path)
    try:
        genesis = load_genesis(cfg.genesis)
    except LedgerError as exc:
        raise click.ClickException(exc.detail) from None
    try:
        f = src.open("rb")
    except OSError as exc:
        raise click.ClickException(f"cannot open {src}: {exc.strerror}") from None
    with f:
        got = restore_bundle(f, cfg.data_dir, genesis)
    click.echo(f"restored height {got['height']} with {got['checkpoints']} checkpoints into "
               f"{cfg.data_dir}; Raft state is empty: start the node, it catches up "
               f"(no vote until it hears a leader, none at term ≤ {got['term_floor']})")
