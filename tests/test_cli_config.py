"""Where the CLI finds the server URL, the token and the gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fnstage import settings
from fnstage.cli import config
from fnstage.cli.client import CliError


def write_credentials(directory: Path, **data: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "credentials.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_defaults_without_environment_or_credentials(tmp_path: Path) -> None:
    settings = config.resolve({"FNSTAGE_CONFIG_DIR": str(tmp_path)})
    assert settings.url == "http://127.0.0.1:8470"
    assert settings.token is None
    assert settings.credentials_path == tmp_path / "credentials.json"


def test_config_dir_defaults_to_home_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.credentials_path({}) == tmp_path / ".config" / "fnstage" / "credentials.json"
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert config.credentials_path(xdg) == tmp_path / "xdg" / "fnstage" / "credentials.json"


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"XDG_CONFIG_HOME": "xdg"},
        {"FNSTAGE_CONFIG_DIR": "cfg"},
        {"XDG_CONFIG_HOME": "x", "FNSTAGE_CONFIG_DIR": "c"},
    ],
)
def test_reads_credentials_where_fnstage_up_writes_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_CONFIG_HOME", "FNSTAGE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, str(tmp_path / value))
    assert config.credentials_path() == settings.credentials_path()


def test_credentials_file_gives_url_token_and_user(tmp_path: Path) -> None:
    write_credentials(tmp_path, url="http://127.0.0.1:9000/", token="fns_abc", user="admin")
    settings = config.resolve({"FNSTAGE_CONFIG_DIR": str(tmp_path)})
    assert (settings.url, settings.token, settings.user) == ("http://127.0.0.1:9000", "fns_abc", "admin")


def test_environment_wins_over_credentials_file(tmp_path: Path) -> None:
    write_credentials(tmp_path, url="http://127.0.0.1:8470", token="fns_file")
    settings = config.resolve(
        {
            "FNSTAGE_CONFIG_DIR": str(tmp_path),
            "FNSTAGE_URL": "http://127.0.0.1:8470/",
            "FNSTAGE_TOKEN": "fns_env",
        }
    )
    assert (settings.url, settings.token) == ("http://127.0.0.1:8470", "fns_env")


def test_stored_token_is_not_sent_to_another_server(tmp_path: Path) -> None:
    write_credentials(tmp_path, url="http://127.0.0.1:8470", token="fns_local")
    settings = config.resolve({"FNSTAGE_CONFIG_DIR": str(tmp_path), "FNSTAGE_URL": "https://fn.example.com"})
    assert settings.url == "https://fn.example.com"
    assert settings.token is None


def test_stored_token_without_url_is_used(tmp_path: Path) -> None:
    write_credentials(tmp_path, token="fns_any")
    assert config.resolve({"FNSTAGE_CONFIG_DIR": str(tmp_path)}).token == "fns_any"


def test_broken_credentials_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "credentials.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CliError, match="credentials file .* is not valid JSON"):
        config.resolve({"FNSTAGE_CONFIG_DIR": str(tmp_path)})


def test_credentials_file_must_be_an_object(tmp_path: Path) -> None:
    (tmp_path / "credentials.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(CliError, match="must hold a JSON object"):
        config.resolve({"FNSTAGE_CONFIG_DIR": str(tmp_path)})


def test_gateway_from_option_then_environment() -> None:
    assert config.resolve_gateway("opt", {"FNSTAGE_GATEWAY": "env"}) == "opt"
    assert config.resolve_gateway(None, {"FNSTAGE_GATEWAY": "env"}) == "env"


def test_missing_gateway_says_how_to_give_one() -> None:
    with pytest.raises(CliError, match=r"pass -g/--gateway ID or set FNSTAGE_GATEWAY"):
        config.resolve_gateway(None, {})
