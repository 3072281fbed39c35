"""Where the CLI finds the server URL, the token and the gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fnstage import contexts, settings
from fnstage.cli import config
from fnstage.cli.client import CliError
from fnstage.cli.main import app
from fnstage.testing import free_port


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


def test_stored_token_without_url_is_the_default_urls(tmp_path: Path) -> None:
    write_credentials(tmp_path, token="fns_any")  # the earliest form: no URL
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


# --- contexts: one per instance, `up` never overwrites another's --------------------------------------
A, B = "http://127.0.0.1:8470", "http://127.0.0.1:38100"


def test_a_second_up_keeps_the_first_instances_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FNSTAGE_CONFIG_DIR", str(tmp_path))
    path, before = settings.write_credentials(A, "fns_a", "admin")
    assert before is None
    path, before = settings.write_credentials(B + "/", "fns_b", "admin")
    assert before == A  # `up` says which one the CLI used, and how to go back
    env = {"FNSTAGE_CONFIG_DIR": str(tmp_path)}
    assert (config.resolve(env).url, config.resolve(env).token) == (B, "fns_b")
    assert config.resolve({**env, "FNSTAGE_URL": A}).token == "fns_a"  # A's token survived
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_an_old_one_instance_file_reads_as_one_context(tmp_path: Path) -> None:
    write_credentials(tmp_path, url=A + "/", token="fns_a", user="admin")
    stored = contexts.load(tmp_path / "credentials.json")
    assert stored.current == A and stored.entries == {A: contexts.Context(A, "fns_a", "admin")}
    contexts.remember(tmp_path / "credentials.json", B, "fns_b", "admin")
    assert set(contexts.load(tmp_path / "credentials.json").entries) == {A, B}


def test_a_context_without_a_token_is_refused_naming_the_file_and_entry(tmp_path: Path) -> None:
    path = write_credentials(tmp_path, current=A, contexts={A: {"user": "admin"}})
    with pytest.raises(CliError, match=f"credentials file {path}: the context '{A}' needs a token"):
        config.resolve({"FNSTAGE_CONFIG_DIR": str(tmp_path)})


def test_the_url_origin_is_named_for_error_messages(tmp_path: Path) -> None:
    env = {"FNSTAGE_CONFIG_DIR": str(tmp_path)}
    assert config.resolve(env).url_from == f"the default (no context in {tmp_path / 'credentials.json'})"
    contexts.remember(tmp_path / "credentials.json", B, "fns_b", "admin")
    assert config.resolve(env).url_from == f"the current context in {tmp_path / 'credentials.json'}"
    assert config.resolve({**env, "FNSTAGE_URL": A}).url_from == "FNSTAGE_URL"


def test_context_ls_and_use_switch_instances(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FNSTAGE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("FNSTAGE_URL", raising=False)
    settings.write_credentials(A, "fns_a", "admin")
    settings.write_credentials(B, "fns_b", "bob")
    runner = CliRunner()
    listed = runner.invoke(app, ["context", "ls"])
    assert listed.exit_code == 0
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert rows == [["*", B, "bob"], [A, "admin"]] and "fns_" not in listed.stdout
    used = runner.invoke(app, ["context", "use", A + "/"])
    assert used.exit_code == 0 and config.resolve().url == A
    unknown = runner.invoke(app, ["context", "use", "http://nowhere:1"])
    assert unknown.exit_code == 1
    assert "no context for http://nowhere:1" in unknown.stderr and A in unknown.stderr
    assert config.resolve().url == A  # unchanged


def test_an_unreachable_instance_names_the_file_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FNSTAGE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("FNSTAGE_URL", raising=False)
    monkeypatch.delenv("FNSTAGE_TOKEN", raising=False)
    dead = f"http://127.0.0.1:{free_port()}"
    settings.write_credentials(dead, "fns_dead", "admin")
    result = CliRunner().invoke(app, ["gateway", "ls"])
    assert result.exit_code == 1
    assert f"cannot reach fnstage at {dead}" in result.stderr
    assert str(tmp_path / "credentials.json") in result.stderr and "fnstage context use" in result.stderr
