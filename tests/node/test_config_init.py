"""node/config.py and ``courtledger init`` (DESIGN §4). Budget: < 5 s."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.crypto import Ed25519Signer
from ledger.genesis import DEFAULT_ROLES, load_genesis
from node.cli import main
from node.config import ConfigError, load_config
from node.init import init_consortium, token_digest


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("c") / "consortium"
    return out, init_consortium(out, 3, base_port=17100)


def test_init_writes_design_layout(consortium: tuple[Path, list[Path]]) -> None:
    out, configs = consortium
    g = load_genesis(out / "genesis.toml")
    assert [n.court for n in g.nodes] == ["最高法", "吉", "吉01"]
    assert all(n.role == "voter" for n in g.nodes)
    assert dict(g.roles) == DEFAULT_ROLES
    assert [p.name for p in configs] == ["spc.toml", "ji.toml", "ji01.toml"]
    roles = {i.id: i.roles for i in g.identities}
    assert roles["ji01-admin"] == ("admin",) and roles["ji01-inspector"] == ("inspector",)
    assert {"clerk", "officer", "judge"} <= {r for rs in roles.values() for r in rs}
    # Keys are 0600 and match the genesis public keys.
    for ident in g.identities:
        key = out / "keys" / f"{ident.id}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert Ed25519Signer.from_file(key).public_key() == ident.public_key
        token = (out / "keys" / f"{ident.id}.token").read_text().strip()
        assert token_digest(token) in (out / "tokens.toml").read_text()
    for node in g.nodes:
        nk = out / "keys" / f"{node.id}.node.key"
        assert stat.S_IMODE(nk.stat().st_mode) == 0o600
        assert Ed25519Signer.from_file(nk).public_key() == node.public_key
        assert stat.S_IMODE((out / "keys" / f"{node.id}.tls.key").stat().st_mode) == 0o600


def test_config_paths_resolve_against_the_config_file(
    consortium: tuple[Path, list[Path]],
) -> None:
    out, configs = consortium
    cwd = os.getcwd()
    try:
        os.chdir("/")
        cfg = load_config(configs[1], env={})
    finally:
        os.chdir(cwd)
    assert cfg.node_id == "ji"
    assert cfg.genesis == (out / "genesis.toml").resolve()
    assert cfg.data_dir == (out / "data" / "ji").resolve()
    assert str(cfg.listen.raft) == "127.0.0.1:17101"
    assert cfg.listen.internal.port == 17201 and cfg.listen.public.port == 17301


def test_env_overrides_nest_with_double_underscore(consortium: tuple[Path, list[Path]]) -> None:
    _, configs = consortium
    env = {
        "COURTLEDGER_LISTEN__PUBLIC": "0.0.0.0:9443",
        "COURTLEDGER_PEERS__JI01": "10.0.0.3:7101",
        "COURTLEDGER_BUILDER__MAX_DELAY_MS": "7",
        "COURTLEDGER_NODE": "http://x",  # a CLI variable, not config: ignored
    }
    cfg = load_config(configs[0], env=env)
    assert str(cfg.listen.public) == "0.0.0.0:9443"
    assert str(cfg.peers["ji01"]) == "10.0.0.3:7101"
    assert cfg.builder.max_delay_ms == 7


@pytest.mark.parametrize(
    ("edit", "env", "field"),
    [
        (lambda t: t.replace('node_id = "spc"\n', ""), {}, "node_id"),
        (lambda t: t.replace('public = "127.0.0.1:17300"', 'public = "nope"'), {}, "listen.public"),
        (lambda t: "colour = 1\n" + t, {}, "colour"),
        (lambda t: t + "\n[builder]\nmax_entries = -1\n", {}, "builder.max_entries"),
        (lambda t: t, {"COURTLEDGER_BUILDER__MAX_BYTES": "lots"}, "builder.max_bytes"),
        (lambda t: t.replace("keys/spc.node.key", "keys/missing.key"), {}, "node_key"),
        (lambda t: t + "\n[raft]\ntick = 5\n", {}, "raft.tick"),
    ],
)
def test_bad_config_names_the_field_in_one_line(
    consortium: tuple[Path, list[Path]], edit: object, env: dict[str, str], field: str
) -> None:
    out, configs = consortium
    bad = out / "bad.toml"
    bad.write_text(edit(configs[0].read_text()))  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        load_config(bad, env=env)
    assert info.value.field == field
    assert "\n" not in str(info.value) and field in str(info.value)


def test_node_run_with_a_bad_config_exits_2_with_one_line(
    consortium: tuple[Path, list[Path]],
) -> None:
    out, configs = consortium
    bad = out / "bad2.toml"
    bad.write_text(configs[0].read_text().replace('raft = "127.0.0.1:17100"', 'raft = 5'))
    result = CliRunner().invoke(main, ["node", "run", "--config", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "listen.raft" in result.output


def test_init_cli_refuses_a_non_empty_dir(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["init", "--dir", str(tmp_path / "c"), "--courts", "1"])
    assert ok.exit_code == 0, ok.output
    assert "chain id" in ok.output
    again = runner.invoke(main, ["init", "--dir", str(tmp_path / "c")])
    assert again.exit_code == 2 and "not empty" in again.output


def test_the_documented_example_config_is_valid() -> None:
    import tomllib

    from node.config import BuilderConfig, PublicConfig, parse_config

    path = Path(__file__).resolve().parents[2] / "config" / "node.example.toml"
    with path.open("rb") as f:
        cfg = parse_config(tomllib.load(f), path, env={})
    # The example documents the defaults.
    assert cfg.builder == BuilderConfig() and cfg.public == PublicConfig()
    assert cfg.node_id == "ji01" and str(cfg.listen.internal) == "127.0.0.1:7202"


def test_tls_sections_resolve_paths_and_name_a_missing_file(
    consortium: tuple[Path, list[Path]],
) -> None:
    out, configs = consortium
    with_tls = out / "tls.toml"
    with_tls.write_text(configs[0].read_text() + '\n[public_tls]\ncert = "keys/spc.tls.crt"\n'
                        'key = "keys/spc.tls.key"\n')
    cfg = load_config(with_tls, env={})
    assert cfg.public_tls is not None and cfg.public_tls.cert == out / "keys" / "spc.tls.crt"
    assert cfg.internal_tls is None
    bad = out / "tls-bad.toml"
    bad.write_text(configs[0].read_text() + '\n[internal_tls]\ncert = "keys/spc.tls.crt"\n'
                   'key = "keys/spc.tls.key"\nclient_ca = "keys/nope.pem"\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad, env={})
    assert info.value.field == "internal_tls.client_ca"
