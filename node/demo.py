"""``courtledger demo`` (``make run``): a local consortium with data in it, and where to look.

1. ``init`` a consortium of demo courts under ``DIR`` (default ``run/demo``, recreated);
2. start one ``courtledger node run`` process per court on loopback and wait until all are
   ready;
3. load a synthetic enforcement workload (signed by the courts' clerks and officers) through
   the internal API, and wait for its cosigned checkpoint;
4. print the public verification page, the internal API, a document to try, and the commands
   an auditor can run;
5. run until Ctrl-C (or ``--duration`` seconds), then stop every node with SIGTERM.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from api.codec import envelope_to_json
from ledger.genesis import load_genesis
from node.config import load_config
from node.init import DEMO_COURTS, init_consortium
from node.workload import load_items, sign_items


class Cluster:
    """Node processes started from a consortium folder (used by the demo, tests and bench)."""

    def __init__(self, folder: Path, extra_env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.genesis = load_genesis(folder / "genesis.toml")
        self.ids = [n.id for n in self.genesis.nodes]
        self.configs = {i: load_config(folder / f"{i}.toml", env={}) for i in self.ids}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.extra_env = extra_env or {}
        (folder / "logs").mkdir(exist_ok=True)

    def internal(self, node_id: str) -> str:
        """The internal API base URL of a node."""
        return f"http://{self.configs[node_id].listen.internal}"

    def public(self, node_id: str) -> str:
        """The public API base URL of a node."""
        return f"http://{self.configs[node_id].listen.public}"

    def start(self, node_id: str, env: dict[str, str] | None = None) -> None:
        """Start one node process (logs in ``<folder>/logs/<id>.log``)."""
        import os

        log = open(self.folder / "logs" / f"{node_id}.log", "ab")  # noqa: SIM115
        self.procs[node_id] = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "node", "run", "--config",
             str(self.folder / f"{node_id}.toml")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            env={**os.environ, **self.extra_env, **(env or {})},
            # Own session: Ctrl-C in the terminal reaches the demo, which then stops every
            # node with SIGTERM in order, instead of all processes at once.
            start_new_session=True,
        )
        log.close()

    def start_all(self) -> None:
        """Start every node."""
        for i in self.ids:
            self.start(i)

    def stop(self, node_id: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Stop one node (SIGTERM by default, SIGKILL for a crash) and reap it."""
        p = self.procs.pop(node_id, None)
        if p is None:
            return None
        p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()

    def stop_all(self) -> None:
        """Stop every node still running."""
        for i in list(self.procs):
            if i in self.procs:
                self.procs[i].send_signal(signal.SIGTERM)
        for i in list(self.procs):
            self.stop(i)

    def status(self, node_id: str) -> dict[str, Any] | None:
        """``/v1/cluster`` of a node, or None if it does not answer."""
        try:
            r = httpx.get(self.internal(node_id) + "/v1/cluster", timeout=2)
            return r.json() if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def wait_ready(self, ids: list[str] | None = None, timeout: float = 90) -> None:
        """Wait until every node answers ``/readyz`` 200 (a leader is known)."""
        deadline = time.monotonic() + timeout
        pending = list(ids or self.ids)
        while pending:
            for i in list(pending):
                p = self.procs.get(i)
                if p is not None and p.poll() is not None:
                    raise RuntimeError(f"node {i} exited with {p.returncode}; see "
                                       f"{self.folder / 'logs' / (i + '.log')}")
                try:
                    if httpx.get(self.internal(i) + "/readyz", timeout=2).status_code == 200:
                        st = self.status(i) or {}
                        if st.get("chain_id") != self.genesis.chain_id.hex():
                            raise RuntimeError(f"{self.internal(i)} serves another chain")
                        pending.remove(i)
                except httpx.HTTPError:
                    pass
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nodes not ready after {timeout:.0f} s: {pending}")
                time.sleep(0.3)

    def leader(self) -> str | None:
        """The leader as some running node sees it."""
        for i in self.procs:
            st = self.status(i)
            if st and st.get("leader"):
                return str(st["leader"])
        return None


def submit_all(base: str, envelopes: list[dict[str, Any]], chunk: int = 50,
               wait: str = "commit") -> list[dict[str, Any]]:
    """POST envelopes in chunks (JSON form), retrying 503s with the same envelopes."""
    out: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(envelopes), chunk):
            body = {"entries": [envelope_to_json(e) for e in envelopes[i:i + chunk]]}
            for attempt in range(30):
                r = client.post(base + "/v1/entries", params={"wait": wait}, json=body)
                if r.status_code == 200:
                    out.extend(r.json()["entries"])
                    break
                if r.status_code != 503 or attempt == 29:
                    raise RuntimeError(f"submission refused: {r.status_code} {r.text[:300]}")
                time.sleep(0.5)
    return out


def run_demo(out: Path, *, courts: int, cases: int, duration: float, base_port: int) -> int:
    """The demo; returns the exit code."""
    out = out.resolve()
    if out.exists():
        if not (out / "genesis.toml").exists():
            click.echo(f"courtledger: {out} exists and is not a demo folder; pass --dir", err=True)
            return 2
        shutil.rmtree(out)
    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)  # `kill <demo>` stops the nodes too
    # Ctrl-C stops the demo even when started from a shell that ignores SIGINT in background.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    click.echo(f"▶ courtledger demo: {courts} courts on loopback, data in {out}")
    init_consortium(out, courts, base_port=base_port)
    cluster = Cluster(out)
    busy = ports_in_use(cluster)
    if busy:
        click.echo(f"courtledger: ports in use: {', '.join(busy)} (another demo running?); "
                   "pass --base-port", err=True)
        return 2
    # The first court's node is the inspection reporter: it signs a `report` entry with that
    # court's inspector key every minute while findings change (issue 8, DESIGN §2 `report`).
    reporter = cluster.ids[0]
    for i in cluster.ids:
        cluster.start(i, env={
            "COURTLEDGER_INSPECTION__REPORTER": "true",
            "COURTLEDGER_INSPECTION__INSPECTOR_KEY": str(out / "keys" / f"{i}-inspector.key"),
            "COURTLEDGER_INSPECTION__REPORT_INTERVAL_S": "60",
        } if i == reporter else None)
    try:
        click.echo("▶ starting node processes: " + ", ".join(
            f"{c.code} ({c.slug})" for c in DEMO_COURTS[:courts]))
        cluster.wait_ready()
        leader = cluster.leader()
        click.echo(f"▶ consortium ready; Raft leader: {leader}")
        codes = [n.court for n in cluster.genesis.nodes]
        items = load_items(codes, cases, seed=1, docs_dir=out / "documents")
        envs = sign_items(items, cluster.genesis, out / "keys")
        t0 = time.monotonic()
        first = cluster.ids[0]
        results = submit_all(cluster.internal(first), envs, chunk=200)
        # One last entry with wait=receipt: everything before it is then cosigned too.
        last = submit_all(cluster.internal(first), envs[:1], wait="receipt")
        dt = time.monotonic() - t0
        heights = {r.get("height") for r in results}
        n_cases = len({i.get("case") for i in items if i.get("case")})
        click.echo(f"▶ loaded {len(results)} entries ({n_cases} enforcement cases) in {dt:.1f} s, "
                   f"{len(heights)} blocks; cosigned receipt: "
                   f"{'yes' if last and last[0].get('receipt') else 'pending'}")
        docs = sorted((out / "documents").glob("*.txt"))
        pub = cluster.public(first)
        intr = cluster.internal(first)
        token = out / "keys" / f"{cluster.ids[-1]}-inspector.token"
        click.echo("")
        click.echo("  Public verification page (open in a browser):  " + pub + "/")
        click.echo("  Internal court API (OpenAPI at /docs):          " + intr + "/docs")
        for i in cluster.ids[1:]:
            click.echo(f"      other nodes: internal {cluster.internal(i)}  public "
                       f"{cluster.public(i)}/")
        click.echo("  Inspection dashboard (sign in with the token):  " + intr + "/dashboard/"
                   f"   token: {token}")
        if docs:
            digest = hashlib.sha256(docs[0].read_bytes()).hexdigest()
            click.echo(f"  A document to verify (drop it on the page):    {docs[0]}")
            click.echo(f"  … or open its deep link (as a QR code would):  {pub}/?h={digest}")
            click.echo(f"  … or by hash:  curl {pub}/v1/verify/"
                       f"$(sha256sum '{docs[0]}' | cut -c1-64)")
        click.echo("  Cluster status:  curl " + intr + "/v1/cluster")
        click.echo("  An auditor's check of the whole chain:")
        click.echo(f"      courtledger audit chain --node {intr} --token {token} "
                   f"--consortium {out / 'genesis.toml'}")
        click.echo("  The closed-case inspection (终本智能巡查) over the chain:")
        click.echo(f"      courtledger inspect --node {intr} --token {token} "
                   f"--consortium {out / 'genesis.toml'}")
        click.echo(f"  Submit a document yourself:  courtledger submit document --node {intr} "
                   f"--genesis {out / 'genesis.toml'} "
                   f"--key {out / 'keys' / (cluster.ids[-1] + '-clerk1.key')} "
                   f"--case '（2025）{DEMO_COURTS[courts - 1].code}执1号' --file FILE "
                   "--doc-type 执行裁定书 --wait")
        click.echo("")
        if duration > 0:
            click.echo(f"▶ running for {duration:.0f} s (--duration), then stopping …")
            time.sleep(duration)
        else:
            click.echo("▶ running. Press Ctrl-C to stop the consortium.")
            try:
                while all(p.poll() is None for p in cluster.procs.values()):
                    time.sleep(0.5)
                click.echo("courtledger: a node exited; stopping the demo", err=True)
                return 1
            except KeyboardInterrupt:
                _say("")
        return 0
    except (RuntimeError, TimeoutError) as exc:
        click.echo(f"courtledger: demo failed: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("\n▶ interrupted")
        return 130
    finally:
        # Stop the nodes before anything else can fail (a closed stdout must not orphan them).
        _say("▶ stopping nodes …")
        cluster.stop_all()
        _say(f"▶ stopped. The data stays in {out}; `courtledger demo` recreates it.")


def _say(text: str) -> None:
    try:
        click.echo(text)
    except OSError:
        pass


def ports_in_use(cluster: Cluster) -> list[str]:
    """Listen addresses of the consortium that something else already holds."""
    import socket

    busy = []
    for cfg in cluster.configs.values():
        for addr in (cfg.listen.raft, cfg.listen.internal, cfg.listen.public):
            with socket.socket() as s:
                # As the listeners do: a port in TIME_WAIT after a previous run is free.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((addr.host, addr.port))
                except OSError:
                    busy.append(str(addr))
    return busy
