"""A node's configuration (DESIGN §4): a TOML file, environment overrides, one-line errors.

The file holds ``node_id``, ``genesis``, ``data_dir``, the key and certificate paths, ``[listen]``
(``raft``, ``internal``, ``public`` as ``host:port``) and optional sections. Relative paths resolve
against the folder of the config file, so a consortium directory can be moved as a whole.

``COURTLEDGER_<SECTION>__<KEY>`` overrides one value (double underscore for nesting), e.g.
``COURTLEDGER_LISTEN__PUBLIC=0.0.0.0:9443`` or ``COURTLEDGER_PEERS__JI01=10.0.0.2:7101``.
``[peers]`` overrides a peer's Raft address from the genesis file; its certificate pin still
applies.

A bad config raises :class:`ConfigError` whose message is one line naming the field; the CLI
prints it and exits 2 (DESIGN §6).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "COURTLEDGER_"


class ConfigError(Exception):
    """A config that cannot run a node; ``field`` names the offending key (dotted)."""

    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(f"config error: {field_name}: {detail}")
        self.field = field_name
        self.detail = detail


@dataclass(frozen=True)
class HostPort:
    """A ``host:port`` listen or peer address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_hostport(name: str, value: object) -> HostPort:
    """Parse ``host:port`` (IPv6 as ``[::1]:port``), naming ``name`` on error."""
    if not isinstance(value, str):
        raise ConfigError(name, f"expected 'host:port', got {type(value).__name__}")
    host, sep, port_s = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(name, f"expected 'host:port', got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(name, f"port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(name, f"port {port} outside 0…65535")
    return HostPort(host, port)


@dataclass(frozen=True)
class Listen:
    """The three listeners of a node."""

    raft: HostPort
    internal: HostPort
    public: HostPort


@dataclass(frozen=True)
class BuilderConfig:
    """Block batching on the leader: a block closes at ``max_entries``, ``max_bytes`` or after
    ``max_delay_ms`` since its first entry, whichever comes first (the genesis ``params`` still
    bound every block)."""

    max_entries: int = 2000
    max_bytes: int = 4 * 1024 * 1024
    max_delay_ms: int = 5


@dataclass(frozen=True)
class RaftConfig:
    """Timing of the Raft runtime."""

    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    #: Compact the Raft log once this many applied entries are stored (the ledger store is the
    #: snapshot; a node that needs compacted entries catches up by verified block transfer).
    compact_threshold: int = 10_000
    #: Entries kept after compaction, so a briefly lagging follower catches up from the log.
    compact_retain: int = 1_000


@dataclass(frozen=True)
class PublicConfig:
    """The public verify listener."""

    max_upload_bytes: int = 64 * 1024 * 1024
    rate_per_second: float = 50.0
    rate_burst: int = 100
    #: A node whose applied height trails the best known commit by more than this answers 503.
    max_lag_blocks: int = 50


@dataclass(frozen=True)
class InternalConfig:
    """The internal listener."""

    max_body_bytes: int = 32 * 1024 * 1024
    wait_timeout_ms: int = 10_000


@dataclass(frozen=True)
class TLSListenerConfig:
    """HTTPS for a listener: certificate and key (PEM); ``client_ca`` asks clients for a
    certificate signed by it (the internal listener's client certificates, DESIGN §5)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True)
class NodeConfig:
    """A node's whole configuration, with every path absolute."""

    path: Path
    node_id: str
    genesis: Path
    data_dir: Path
    node_key: Path
    tls_key: Path
    tls_cert: Path
    listen: Listen
    #: ``tokens.toml``: SHA-256 of each bearer token → identity id (reads of case data).
    tokens: Path | None = None
    peers: dict[str, HostPort] = field(default_factory=dict)
    builder: BuilderConfig = field(default_factory=BuilderConfig)
    raft: RaftConfig = field(default_factory=RaftConfig)
    public: PublicConfig = field(default_factory=PublicConfig)
    internal: InternalConfig = field(default_factory=InternalConfig)
    #: ``[public_tls]``: HTTPS on the public listener (browsers give the page its crypto only
    #: in a secure context); without it, put a TLS proxy in front.
    public_tls: TLSListenerConfig | None = None
    #: ``[internal_tls]``: HTTPS with client certificates on the internal listener.
    internal_tls: TLSListenerConfig | None = None
    #: Test-only failure injection (e.g. ``equivocate``); never set in production configs.
    failpoints: tuple[str, ...] = ()
    #: ``[inspection]``: the closed-case inspection worker (``node.inspection``).
    inspection: Any = None


_TOP_KEYS = {
    "node_id", "genesis", "data_dir", "node_key", "tls_key", "tls_cert", "listen", "peers",
    "builder", "raft", "public", "internal", "failpoints", "tokens", "public_tls",
    "internal_tls", "inspection",
}


def _env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """Apply ``COURTLEDGER_A__B=v`` to ``raw["a"]["b"]`` (keys lowercased).

    Values are strings; they are converted to the field's type by the schema below.
    """
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if parts[0] not in _TOP_KEYS:
            continue  # other COURTLEDGER_* variables (e.g. for the CLI) are not config
        target = raw
        for p in parts[:-1]:
            sub = target.setdefault(p, {})
            if not isinstance(sub, dict):
                raise ConfigError(".".join(parts), "environment override of a non-table")
            target = sub
        target[parts[-1]] = value


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(name, "expected a table")
    return value


def _typed(cls: Any, raw: dict[str, Any], prefix: str) -> Any:
    """Build the dataclass ``cls`` from ``raw``, converting env strings and naming bad fields."""
    fields = cls.__dataclass_fields__
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"{prefix}.{key}", "unknown field")
        default = fields[key].default
        want = type(default)
        if isinstance(value, str) and want is not str:
            try:
                value = want(value)
            except ValueError:
                raise ConfigError(f"{prefix}.{key}", f"expected {want.__name__}") from None
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or isinstance(value, bool):
            raise ConfigError(f"{prefix}.{key}", f"expected {want.__name__}, got {value!r}")
        if value <= 0:
            raise ConfigError(f"{prefix}.{key}", "must be positive")
        kwargs[key] = value
    return cls(**kwargs)


def parse_config(
    raw: dict[str, Any], path: Path, env: Mapping[str, str] | None = None
) -> NodeConfig:
    """Validate a parsed TOML table (after env overrides) into a :class:`NodeConfig`."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    _env_overrides(raw, os.environ if env is None else env)
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(key, "unknown field")
    base = path.parent

    def text(name: str) -> str:
        if name not in raw:
            raise ConfigError(name, "missing")
        value = raw[name]
        if not isinstance(value, str) or not value:
            raise ConfigError(name, "expected a non-empty string")
        return value

    def a_path(name: str) -> Path:
        p = Path(text(name)).expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    node_id = text("node_id")
    if not all(c.isalnum() or c in "-_." for c in node_id):
        raise ConfigError("node_id", f"{node_id!r}: use letters, digits, '-', '_' or '.'")
    listen_raw = _section(raw, "listen")
    for key in listen_raw:
        if key not in ("raft", "internal", "public"):
            raise ConfigError(f"listen.{key}", "unknown field")
    listen = Listen(
        **{
            k: parse_hostport(f"listen.{k}", listen_raw[k]) if k in listen_raw
            else _missing(f"listen.{k}")
            for k in ("raft", "internal", "public")
        }
    )
    peers = {
        str(k): parse_hostport(f"peers.{k}", v) for k, v in _section(raw, "peers").items()
    }
    failpoints_raw = raw.get("failpoints", [])
    if isinstance(failpoints_raw, str):
        failpoints_raw = [p for p in failpoints_raw.split(",") if p]
    if not isinstance(failpoints_raw, list) or not all(
        isinstance(p, str) for p in failpoints_raw
    ):
        raise ConfigError("failpoints", "expected a list of strings")
    def tls(name: str) -> TLSListenerConfig | None:
        if name not in raw:
            return None
        sec = _section(raw, name)
        for field_name in sec:
            if field_name not in ("cert", "key", "client_ca"):
                raise ConfigError(f"{name}.{field_name}", "unknown field")

        def p(key: str, required: bool = True) -> Path | None:
            if key not in sec:
                if required:
                    raise ConfigError(f"{name}.{key}", "missing")
                return None
            if not isinstance(sec[key], str) or not sec[key]:
                raise ConfigError(f"{name}.{key}", "expected a path")
            q = Path(sec[key]).expanduser()
            return q if q.is_absolute() else (base / q).resolve()

        cert, keyfile = p("cert"), p("key")
        assert cert is not None and keyfile is not None
        return TLSListenerConfig(cert, keyfile, p("client_ca", required=False))

    return NodeConfig(
        path=path,
        public_tls=tls("public_tls"),
        internal_tls=tls("internal_tls"),
        node_id=node_id,
        genesis=a_path("genesis"),
        data_dir=a_path("data_dir"),
        node_key=a_path("node_key"),
        tls_key=a_path("tls_key"),
        tls_cert=a_path("tls_cert"),
        tokens=a_path("tokens") if "tokens" in raw else None,
        listen=listen,
        peers=peers,
        builder=_typed(BuilderConfig, _section(raw, "builder"), "builder"),
        raft=_typed(RaftConfig, _section(raw, "raft"), "raft"),
        public=_typed(PublicConfig, _section(raw, "public"), "public"),
        internal=_typed(InternalConfig, _section(raw, "internal"), "internal"),
        failpoints=tuple(failpoints_raw),
        inspection=_inspection(_section(raw, "inspection"), base),
    )


def _inspection(raw: dict[str, Any], base: Path) -> Any:
    """``[inspection]`` as :class:`node.inspection.InspectionSettings`."""
    from node.inspection import parse_inspection

    try:
        return parse_inspection(raw, base)
    except ValueError as exc:
        name, _, detail = str(exc).partition(": ")
        raise ConfigError(name, detail) from None


def _missing(name: str) -> HostPort:
    raise ConfigError(name, "missing")


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Read and validate a node config file; raise :class:`ConfigError` (one line) if bad.

    Files the node needs (genesis, keys, certificates) must exist; ``data_dir`` is created by
    the node.
    """
    path = Path(path).resolve()
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    cfg = parse_config(raw, path, env)
    for name in ("genesis", "node_key", "tls_key", "tls_cert", "tokens"):
        p: Path | None = getattr(cfg, name)
        if p is not None and not p.is_file():
            raise ConfigError(name, f"no such file {p}")
    for sec in ("public_tls", "internal_tls"):
        t: TLSListenerConfig | None = getattr(cfg, sec)
        for key in ("cert", "key", "client_ca"):
            q = getattr(t, key) if t is not None else None
            if q is not None and not q.is_file():
                raise ConfigError(f"{sec}.{key}", f"no such file {q}")
    return cfg
