"""``courtledger node run``: one node with its internal and public listeners.

SIGTERM or SIGINT stops it cleanly: the listeners stop taking requests, the builder and Raft
stop, the store closes. A restart resumes from disk (the store's head and Raft index).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
import sys
from collections.abc import Generator
from typing import Any

import uvicorn

from api.internal import create_internal_app
from api.public import create_public_app
from node.config import NodeConfig, TLSListenerConfig


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the node."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _JsonFormatter(logging.Formatter):
    """Structured JSON log lines (no personal data: entries are logged by id only)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"t": round(record.created, 3), "level": record.levelname,
               "logger": record.name, "msg": record.getMessage()}
        if hasattr(record, "identity"):
            out["identity"] = record.identity
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(node_id: str) -> None:
    """JSON lines on stderr, tagged with the node id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("consensus").setLevel(logging.WARNING)
    logging.getLogger("courtledger").info("node %s starting", node_id)


def _tls(t: TLSListenerConfig | None) -> dict[str, Any]:
    """uvicorn's TLS settings for a listener (TLS 1.2+; client certificates if ``client_ca``)."""
    if t is None:
        return {}
    out: dict[str, Any] = {"ssl_certfile": str(t.cert), "ssl_keyfile": str(t.key)}
    if t.client_ca is not None:
        out["ssl_ca_certs"] = str(t.client_ca)
        out["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return out


def run_node(cfg: NodeConfig) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    setup_logging(cfg.node_id)
    try:
        return asyncio.run(_main(cfg))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the loop took it
        return 0


async def _main(cfg: NodeConfig) -> int:
    from node.process import Node

    log = logging.getLogger("courtledger.node")
    try:
        node = Node(cfg)
        # Test-only failure injection (COURTLEDGER_FAILPOINTS); a no-op when none is set.
        from node.failpoints import install

        install(node)
    except Exception as exc:  # noqa: BLE001 - one line, then exit 2 (DESIGN §6)
        print(f"courtledger: cannot start node {cfg.node_id}: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    internal = _Server(uvicorn.Config(
        create_internal_app(node.service, max_body_bytes=cfg.internal.max_body_bytes),
        host=cfg.listen.internal.host, port=cfg.listen.internal.port,
        log_level="warning", lifespan="off", access_log=False, **_tls(cfg.internal_tls),
    ))
    public = _Server(uvicorn.Config(
        create_public_app(node.service, genesis=node.genesis,
                          max_upload_bytes=cfg.public.max_upload_bytes,
                          rate_per_second=cfg.public.rate_per_second,
                          rate_burst=cfg.public.rate_burst),
        host=cfg.listen.public.host, port=cfg.listen.public.port,
        log_level="warning", lifespan="off", access_log=False, **_tls(cfg.public_tls),
    ))
    servers = [asyncio.create_task(internal.serve()), asyncio.create_task(public.serve())]
    scheme = {"internal": "https" if cfg.internal_tls else "http",
              "public": "https" if cfg.public_tls else "http"}
    log.info("node %s up: internal %s://%s public %s://%s", cfg.node_id, scheme["internal"],
             cfg.listen.internal, scheme["public"], cfg.listen.public)
    done, _ = await asyncio.wait(
        [asyncio.create_task(stop.wait()), *servers], return_when=asyncio.FIRST_COMPLETED
    )
    code = 0
    for t in done:
        if t in servers and (t.exception() is not None or not internal.started):
            code = 1  # a listener could not start (port in use...)
    log.info("node %s stopping", cfg.node_id)
    internal.should_exit = True
    public.should_exit = True
    await asyncio.gather(*servers, return_exceptions=True)
    await node.stop()
    log.info("node %s stopped", cfg.node_id)
    return code
