"""``courtledger follow``: a block follower (DESIGN §3, issue 7).

For the many courts that want their own verified copy without voting: it pulls blocks from
**any** node's internal listener (``GET /v1/blocks/{h}`` with an identity's bearer token,
canonical msgpack), checks each exactly as a node's apply does (validity against the state
before it, hash link, proposer signature, Merkle root: ``node.chain.Chain.check``), and keeps
the cosigned checkpoints that carry a quorum of the voters in force at their height. It never
talks to Raft, so it puts no load on the leader, and it serves verify-by-hash
(``GET /v1/verify/{sha256}``) and ``/v1/head`` from its own copy when ``--listen`` is given.

A block or checkpoint from the source that does not verify is never stored: the follower
stops pulling from that source, logs the evidence (height and reason), answers ``/readyz``
503 with the reason, and with ``--once`` exits 1 (DESIGN §6: integrity failure). Its data
directory has a node's layout (``DIR/ledger``), so a follower's copy can seed a new node
(``docs/operations.md``, "Adding a court").
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import click
import httpx

from ledger.checkpoints import from_file
from ledger.encoding import decode
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from node.backup import ingest_block, ingest_checkpoint

log = logging.getLogger("courtledger.follow")

__all__ = ["Follower", "follow_command"]


class SourceUnreachable(Exception):
    """The source node did not answer."""


class Follower:
    """Pull, verify and store blocks and checkpoints from one source node."""

    def __init__(self, source: str, token: str, data: Path, genesis: Genesis) -> None:
        from node.chain import Chain

        self.source = source.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.chain = Chain.open(data / "ledger", genesis)
        self.client = httpx.Client(timeout=10)
        #: Why the follower stopped trusting its source (None while all verified).
        self.failure: str | None = None
        self.lock = threading.Lock()

    def close(self) -> None:
        """Close the store and the HTTP client."""
        self.client.close()
        self.chain.close()

    def _get(self, path: str, **kw: Any) -> httpx.Response:
        try:
            return self.client.get(self.source + path, **kw)
        except httpx.HTTPError as exc:
            raise SourceUnreachable(f"{self.source}: {exc}") from None

    def remote_height(self) -> int:
        """The source's head height now."""
        r = self._get("/v1/head")
        if r.status_code != 200:
            raise SourceUnreachable(f"{self.source}/v1/head answered {r.status_code}")
        return int(r.json()["height"])

    def step(self, max_blocks: int = 500, until: int | None = None) -> int:
        """One pull: blocks above our head (at most ``max_blocks``, none above ``until``),
        then checkpoints. Returns how many blocks were stored; sets :attr:`failure` on a bad
        block."""
        if self.failure is not None:
            return 0
        remote = self.remote_height()
        if until is not None:
            remote = min(remote, until)
        stored = 0
        start = self.chain.height + 1
        for h in range(start, min(remote, start + max_blocks - 1) + 1):
            r = self._get(f"/v1/blocks/{h}",
                          headers={**self.headers, "Accept": "application/msgpack"})
            if r.status_code == 401:
                raise click.ClickException(f"{self.source} refused the token (401)")
            if r.status_code != 200:
                break
            try:
                block = decode(r.content, max_size=self.chain.params.max_block_bytes + 4096)
                with self.lock:
                    ingest_block(self.chain, block)
            except LedgerError as exc:
                self._fail(f"block {h} from {self.source} fails verification: "
                           f"{exc.diagnostics()}")
                return stored
            stored += 1
            self._checkpoint(f"/v1/checkpoints/{block['header']['tree_size']}")
        self._checkpoint("/v1/checkpoints/latest")
        return stored

    def _checkpoint(self, path: str) -> None:
        r = self._get(path)
        if r.status_code != 200:
            return  # not cosigned yet
        try:
            cf = from_file(r.json())
            cp = cf.checkpoint
            if cp["chain"] != self.chain.chain_id:
                raise LedgerError("checkpoint of another chain")
            if cp["height"] > self.chain.height or self.chain.cosigned(cp["height"]):
                return
            with self.lock:
                ok = ingest_checkpoint(self.chain, cp, list(cf.signatures))
        except (LedgerError, ValueError, KeyError) as exc:
            self._fail(f"checkpoint {path} from {self.source} is malformed: {exc}")
            return
        if not ok:
            self._fail(f"checkpoint at height {cp['height']} from {self.source} is not of our "
                       "verified block or lacks a quorum of voter signatures")

    def _fail(self, reason: str) -> None:
        self.failure = reason
        log.error("follower stops pulling: %s", reason)


def make_app(follower: Follower) -> Any:
    """The follower's read-only listener: verify-by-hash and head from its own copy."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI(title="courtledger follower", docs_url=None, redoc_url=None)

    @app.get("/v1/verify/{sha256_hex}")
    def verify(sha256_hex: str) -> Any:
        try:
            digest = bytes.fromhex(sha256_hex)
            if len(digest) != 32:
                raise ValueError
        except ValueError:
            return JSONResponse({"error": "bad_hash", "detail": "64 hex digits"}, 400)
        with follower.lock:
            return follower.chain.verify_document(digest)

    @app.get("/v1/head")
    def head() -> Any:
        with follower.lock:
            h = follower.chain.head_info()
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in h.items()}

    @app.get("/readyz")
    def readyz() -> Any:
        if follower.failure is not None:
            return JSONResponse({"ready": False, "reason": follower.failure}, 503)
        return {"ready": True}

    return app


def _serve(app: Any, listen: str) -> None:
    import uvicorn

    host, _, port = listen.rpartition(":")
    config = uvicorn.Config(app, host=host.strip("[]"), port=int(port), log_level="warning")
    threading.Thread(target=uvicorn.Server(config).run, name="follow-http", daemon=True).start()


@click.command("follow")
@click.option("--from", "source", required=True, help="Internal API URL of any node.")
@click.option("--token", "token_file", required=True, type=click.Path(path_type=Path),
              help="An identity's bearer token file (reads of blocks need one).")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="The follower's data dir (a node's layout: DIR/ledger).")
@click.option("--genesis", "genesis_path", envvar="COURTLEDGER_GENESIS", required=True,
              type=click.Path(path_type=Path), help="The pinned genesis file.")
@click.option("--listen", default=None, help="host:port to serve verify-by-hash from the copy.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between pulls.")
@click.option("--once", is_flag=True,
              help="Catch up to the source's head at start and exit (1 on a bad block).")
def follow_command(source: str, token_file: Path, data: Path, genesis_path: Path,
                   listen: str | None, interval: float, once: bool) -> None:
    """Keep a verified copy of the chain from any node; serve verify-by-hash from it."""
    import sys

    from node.member import load_genesis_or_fail

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    genesis = load_genesis_or_fail(genesis_path)
    try:
        token = token_file.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise click.ClickException(f"cannot read {token_file}: {exc.strerror}") from None
    try:
        follower = Follower(source, token, data, genesis)
    except LedgerError as exc:
        raise click.ClickException(exc.detail) from None
    if listen:
        _serve(make_app(follower), listen)
    try:
        while True:
            try:
                # --once catches up to the head the source has when it starts: on a chain
                # that grows about as fast as this copy verifies, "until nothing is new"
                # would never come.
                until = follower.remote_height() if once else None
                while follower.step(until=until) > 0:
                    pass
            except SourceUnreachable as exc:
                if once:
                    click.echo(f"courtledger: source unreachable: {exc}", err=True)
                    sys.exit(3)
                log.warning("source unreachable: %s", exc)
            if follower.failure is not None:
                click.echo(f"courtledger: {follower.failure}", err=True)
                if once or not listen:
                    sys.exit(1)
            if once:
                click.echo(f"height {follower.chain.height}, cosigned "
                           f"{follower.chain.cosigned_height}")
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()
