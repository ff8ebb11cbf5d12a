"""Config: the example file validates, bad files give precise errors, env-only mode works."""

from __future__ import annotations

from pathlib import Path

import pytest

from circuitd.cli import main
from circuitd.config import ConfigError, PassthroughConfig, load_config, read_dotenv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "conf" / "circuitd.toml"


def errors_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return info.value.errors


def test_example_file_validates() -> None:
    config = load_config(EXAMPLE, {})
    assert config.server.port == 8080
    assert "gpt-4o-mini" in config.models
    assert config.providers["mock"].kind == "mock"
    assert config.passthrough is None


def test_check_config_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'eighty'\nworkerz = 2\n")
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "$.server" in err


def test_unknown_field_is_rejected_with_its_path(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "[server]\nprot = 1\n")
    assert errors == ["Object contains unknown field `prot` - at `$.server`"]


def test_every_section_reports_its_own_error(tmp_path: Path) -> None:
    text = """
[server]
port = "eighty"

[store]
batch_rows = -1.5

[providers.up]
kind = "carrier-pigeon"

[models.m]
deployments = [{ provider = "up", price = 1 }]
"""
    errors = errors_of(tmp_path, text)
    assert any("$.server.port" in e for e in errors)
    assert any("$.store.batch_rows" in e for e in errors)
    assert any("$.providers.up.kind" in e for e in errors)
    assert any("$.models.m.deployments[0]" in e and "price" in e for e in errors)


def test_semantic_errors_name_the_field(tmp_path: Path) -> None:
    text = """
[server]
body_timeout_s = 0

[providers.p]
kind = "mock"

[models.m]
deployments = [{ provider = "nope" }]

[[keys]]
id = "a"

[[keys]]
id = "a"
key = "k"
key_sha256 = "zz"
"""
    errors = errors_of(tmp_path, text)
    assert "unknown provider `nope` - at `$.models.m.deployments[0].provider`" in errors
    assert any("duplicate key id `a`" in e for e in errors)
    assert any("exactly one of key, key_env, key_sha256 - at `$.keys[0]`" in e for e in errors)
    assert any("key_sha256 must be 64 hex digits" in e for e in errors)
    assert "server.body_timeout_s must be > 0 - at `$.server.body_timeout_s`" in errors


def test_invalid_toml(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "[server\n")
    assert errors[0].startswith("invalid TOML")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", {})


def test_env_only_defaults_to_mock_passthrough() -> None:
    config = load_config(None, {})
    assert config.passthrough is not None and config.passthrough.provider == "mock"
    assert config.providers["mock"].kind == "mock"
    assert config.store.path == "data/circuit.db"
    assert config.keys == []


def test_env_only_seed_variables() -> None:
    env = {
        "PROVIDER": "OPENAI",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "CIRCUIT_API_KEYS": "a, b,",
        "CIRCUIT_DAILY_USD_LIMIT": "10.5",
        "CIRCUIT_DB": "/tmp/x.db",
        "CIRCUIT_PORT": "9000",
    }
    config = load_config(None, env)
    assert config.passthrough is not None and config.passthrough.provider == "openai"
    openai = config.providers["openai"]
    assert openai.base_url == "http://127.0.0.1:9/v1"
    assert openai.api_key_env == "OPENAI_API_KEY"
    assert [k.key for k in config.keys] == ["a", "b"]
    assert config.limits.daily_usd == 10.5
    assert config.store.path == "/tmp/x.db"
    assert config.server.port == 9000


def test_openai_key_alone_selects_openai() -> None:
    config = load_config(None, {"OPENAI_API_KEY": "sk"})
    assert config.passthrough == PassthroughConfig(provider="openai")


def test_env_fallback_providers() -> None:
    env = {"PROVIDER": "MOCK", "OPENAI_API_KEY": "sk", "CIRCUIT_FALLBACK": "openai, mock,"}
    env["CIRCUIT_FALLBACK_MODEL"] = "gpt-4o-mini"
    config = load_config(None, env)
    assert config.passthrough == PassthroughConfig(
        provider="mock", fallbacks=["openai"], fallback_model="gpt-4o-mini"
    )
    assert set(config.providers) == {"mock", "openai"}
    with pytest.raises(ConfigError, match="provider OPENAI needs OPENAI_API_KEY"):
        load_config(None, {"CIRCUIT_FALLBACK": "OPENAI"})


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PROVIDER": "OPENAI"}, "provider OPENAI needs OPENAI_API_KEY"),
        ({"PROVIDER": "BEDROCK"}, "PROVIDER='BEDROCK'"),
        ({"CIRCUIT_DAILY_USD_LIMIT": "ten"}, "is not a number"),
        ({"CIRCUIT_PORT": "http"}, "is not an integer"),
        ({"CIRCUIT_PORT": "70000"}, "server.port must be between"),
    ],
)
def test_env_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env)
    assert any(fragment in e for e in info.value.errors), info.value.errors


def test_env_overrides_file() -> None:
    config = load_config(EXAMPLE, {"CIRCUIT_DB": "/tmp/o.db", "CIRCUIT_API_KEYS": "extra"})
    assert config.store.path == "/tmp/o.db"
    assert [k.id for k in config.keys] == ["dev", "env-1"]


def test_dotenv_parsing(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nPROVIDER=MOCK\nexport CIRCUIT_API_KEYS='k1,k2'\n"
        'CIRCUIT_DAILY_USD_LIMIT="10.0"\nA=b # trailing\nnot a line\n'
    )
    assert read_dotenv(env_file) == {
        "PROVIDER": "MOCK",
        "CIRCUIT_API_KEYS": "k1,k2",
        "CIRCUIT_DAILY_USD_LIMIT": "10.0",
        "A": "b",
    }
    assert read_dotenv(tmp_path / "missing") == {}
