"""The ``courtledger`` command line (DESIGN §5): one click group, one line per refusal.

Exit codes (DESIGN §6): 0 holds; 1 integrity failure; 2 bad usage or a file that cannot be
opened; 3 node unreachable. Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

EXIT_OK = 0
EXIT_INTEGRITY = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    click.echo(f"courtledger: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """courtledger: a permissioned, Raft-ordered ledger that courts run together."""


@main.command("init")
@click.option("--dir", "out", required=True, type=click.Path(path_type=Path),
              help="Folder to write the consortium into (must not exist or be empty).")
@click.option("--courts", default=3, show_default=True, type=int,
              help="How many demo courts (domain/rulebook.md §6), 1…10.")
@click.option("--base-port", default=7100, show_default=True, type=int,
              help="Raft ports start here; internal at +100, public at +200.")
@click.option("--hash-alg", default="sha256", show_default=True,
              type=click.Choice(["sha256", "sm3"]), help="The chain hash H.")
def init_cmd(out: Path, courts: int, base_port: int, hash_alg: str) -> None:
    """Write a ready local consortium: genesis, node configs, keys, certificates, tokens."""
    from ledger.errors import LedgerError
    from node.init import DEMO_COURTS, init_consortium

    try:
        configs = init_consortium(out, courts, base_port=base_port, hash_alg=hash_alg)
    except (ValueError, FileExistsError, OSError, LedgerError) as exc:
        fail(str(exc))
    from ledger.genesis import load_genesis

    genesis = load_genesis(out / "genesis.toml")
    click.echo(f"wrote a consortium of {courts} courts under {out}")
    click.echo(f"  chain id {genesis.chain_id.hex()}")
    for path, court in zip(configs, DEMO_COURTS, strict=False):
        click.echo(f"  {court.code:<6} {court.name:<16} courtledger node run --config {path}")


@main.group("node")
def node_group() -> None:
    """Run a court node."""


@node_group.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="The node's config file (TOML).")
def node_run(config_path: Path) -> None:
    """Run one node until SIGTERM or Ctrl-C: Raft, ledger, internal and public listeners."""
    from node.config import ConfigError, load_config

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        fail(str(exc))
    from node.main import run_node

    sys.exit(run_node(cfg))


@main.command("demo")
@click.option("--dir", "out", type=click.Path(path_type=Path), default=None,
              help="Folder for the demo consortium (default: ./run/demo, recreated).")
@click.option("--courts", default=3, show_default=True, type=int)
@click.option("--cases", default=40, show_default=True, type=int,
              help="Synthetic enforcement cases to load.")
@click.option("--duration", default=0.0, type=float,
              help="Stop after this many seconds (0: run until Ctrl-C).")
@click.option("--base-port", default=7100, show_default=True, type=int)
def demo_cmd(out: Path | None, courts: int, cases: int, duration: float, base_port: int) -> None:
    """Start a local consortium as separate processes and load a synthetic workload."""
    from node.demo import run_demo

    sys.exit(run_demo(out or Path("run/demo"), courts=courts, cases=cases,
                      duration=duration, base_port=base_port))


from node.submit import submit_group  # noqa: E402  (the group lives in its own module)

main.add_command(submit_group)

# Running it for years (issue 7): keys and genesis, identities, membership, followers, backup.
from node.backup import backup_command, restore_command  # noqa: E402
from node.follow import follow_command  # noqa: E402
from node.identity_cli import identity_group  # noqa: E402
from node.keygen import genesis_group, keygen_command  # noqa: E402
from node.member import member_group  # noqa: E402

main.add_command(keygen_command)
main.add_command(genesis_group)
main.add_command(identity_group)
main.add_command(member_group)
main.add_command(follow_command)
node_group.add_command(backup_command)
node_group.add_command(restore_command)

try:  # the verifier's inspector, when that package provides it
    from verifier.cli import inspect as _inspect  # noqa: E402

    main.add_command(_inspect, "inspect")
except ImportError:  # pragma: no cover - verifier not installed yet
    pass

try:  # the auditor's commands (issue 9: audit chain|receipt|consistency|case, export)
    import node.audit as _audit  # noqa: E402

    main.add_command(_audit.audit_group, "audit")
    if hasattr(_audit, "export_command"):
        main.add_command(_audit.export_command, "export")
except ImportError:  # pragma: no cover - not written yet
    pass


if __name__ == "__main__":  # pragma: no cover
    main()
