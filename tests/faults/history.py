"""The recorded workload: clients submit signed entries and log every call to a history file.

Each client thread submits one envelope at a time (``wait=commit``; client 0 asks for the
cosigned receipt with ``wait=receipt``) to a node chosen at random, and retries *the same
envelope* on 503 or a dropped connection (DESIGN §5: replays are idempotent). The history file
is JSON lines, one record per event, flushed as it happens (so a crashed run keeps it):

* ``{"op": "invoke", "client", "seq", "eid", "t"}`` before the first attempt;
* ``{"op": "ok", …, "height", "leaf_index", "status", "receipt"?}``: acknowledged;
* ``{"op": "fail", …, "code", "detail"}``: refused with a 4xx (definitely not stored);
* ``{"op": "unknown", …}``: no answer before the client gave up (outcome unknown).

Knossos/Jepsen call these :invoke, :ok, :fail and :info.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from api.codec import envelope_to_json
from ledger.crypto import Ed25519Signer
from ledger.entries import entry_id, make_payload, sign_entry
from node.demo import Cluster


class History:
    """An append-only JSON-lines history, safe to write from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._f = path.open("a", encoding="utf-8")
        self.records: list[dict[str, Any]] = []

    def add(self, **rec: Any) -> None:
        rec.setdefault("t", round(time.time(), 3))
        with self._lock:
            self.records.append(rec)
            self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            self._f.flush()

    def close(self) -> None:
        with self._lock:
            self._f.close()

    @staticmethod
    def load(path: Path) -> list[dict[str, Any]]:
        """The records of a history file."""
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]


class Workload:
    """``clients`` threads submitting until :meth:`stop`."""

    def __init__(self, cluster: Cluster, history: History, *, clients: int = 3, seed: int = 0,
                 give_up_s: float = 30.0) -> None:
        self.c = cluster
        self.history = history
        self.clients = clients
        self.seed = seed
        self.give_up_s = give_up_s
        self._stop = threading.Event()
        self._stop_at = 0.0
        self._threads: list[threading.Thread] = []
        self.signer = Ed25519Signer.from_file(cluster.folder / "keys" / "ji01-clerk1.key")

    def start(self) -> None:
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), name=f"client-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 60) -> None:
        """Stop submitting; the entry each client is retrying gets a few more seconds, then is
        recorded as unknown."""
        self._stop_at = time.monotonic()
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def _envelope(self, client: int, seq: int) -> dict[str, Any]:
        case = f"（2025）吉01执{3000 + client}号"
        content = f"fault run {self.seed} client {client} doc {seq}".encode()
        body = {"doc_type": "执行通知书", "doc_no": f"{case}之{seq + 1}",
                "sha256": hashlib.sha256(content).digest(), "size": len(content),
                "media_type": "text/plain"}
        p = make_payload("document", "吉01", self.signer.public_key(), body,
                         int(time.time() * 1000), case=case)
        return sign_entry(self.signer, self.c.genesis.chain_id, p)

    def _client(self, client: int) -> None:
        rng = random.Random(self.seed * 1000 + client)
        wait = "receipt" if client == 0 else "commit"
        seq = 0
        with httpx.Client(timeout=12) as http:
            while not self._stop.is_set():
                env = self._envelope(client, seq)
                eid = entry_id(self.c.genesis.hash_alg, env["payload"]).hex()
                base = {"client": client, "seq": seq, "eid": eid}
                self.history.add(op="invoke", **base)
                body = {"entries": [envelope_to_json(env)]}
                deadline = time.monotonic() + self.give_up_s
                outcome: dict[str, Any] | None = None
                while outcome is None:
                    if time.monotonic() > deadline or (
                            self._stop.is_set() and time.monotonic() > self._stop_at + 10):
                        outcome = {"op": "unknown"}
                        break
                    node = rng.choice(self.c.ids)
                    try:
                        r = http.post(self.c.internal(node) + "/v1/entries",
                                      params={"wait": wait}, json=body)
                    except httpx.HTTPError:
                        time.sleep(0.2)
                        continue
                    if r.status_code == 200:
                        (e,) = r.json()["entries"]
                        if e.get("height") is None:  # accepted only: ask again
                            time.sleep(0.1)
                            continue
                        outcome = {"op": "ok", "node": node, "height": e["height"],
                                   "leaf_index": e["leaf_index"], "status": e["status"]}
                        if e.get("receipt"):
                            outcome["receipt"] = e["receipt"]
                    elif 400 <= r.status_code < 500:
                        err = r.json() if r.headers.get("content-type", "").startswith(
                            "application/json") else {}
                        outcome = {"op": "fail", "node": node, "code": r.status_code,
                                   "detail": str(err)[:300]}
                    else:
                        time.sleep(0.2)
                self.history.add(**outcome, **base)
                seq += 1
