"""Where the server-side commands read the database URL: never a password on the command line unwarned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fnstage.cli.client import CliError
from fnstage.cli.database_url import choose_database_url
from fnstage.cli.main import app

PG = "postgresql://fnstage:s3cret@db.internal:5432/fnstage"


def test_a_password_on_the_command_line_is_warned_about() -> None:
    url, warning = choose_database_url(PG, from_command_line=True, file=None)
    assert url == PG
    assert warning is not None and "ps" in warning and "FNSTAGE_DATABASE_URL" in warning
    assert "--database-url-file" in warning and "s3cret" not in warning


@pytest.mark.parametrize(
    ("given", "from_command_line"),
    [(PG, False), ("postgresql://fnstage@db/fnstage", True), ("sqlite:////tmp/x.db", True), (None, False)],
    ids=["from-the-environment", "no-password", "sqlite", "none"],
)
def test_no_warning_without_a_password_in_argv(given: str | None, from_command_line: bool) -> None:
    assert choose_database_url(given, from_command_line=from_command_line, file=None) == (given, None)


def test_the_url_is_read_from_a_file(tmp_path: Path) -> None:
    file = tmp_path / "db-url"
    file.write_text(PG + "\n")
    assert choose_database_url(None, from_command_line=False, file=file) == (PG, None)


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot read"), ("", "is empty"), ("  \n", "is empty"), (f"{PG}\n{PG}\n", "one line")],
    ids=["missing", "empty", "blank", "two-lines"],
)
def test_a_bad_url_file_is_refused_naming_it(tmp_path: Path, content: str | None, says: str) -> None:
    file = tmp_path / "db-url"
    if content is not None:
        file.write_text(content)
    with pytest.raises(CliError, match=says) as err:
        choose_database_url(None, from_command_line=False, file=file)
    assert str(file) in str(err.value)


def test_a_url_and_a_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="not both"):
        choose_database_url(PG, from_command_line=True, file=tmp_path / "db-url")


# --- through the command: what `fnstage runtime` passes on, and what it prints -----------------------
@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The database URLs `fnstage runtime` would have served from (nothing is started)."""
    urls: list[str] = []

    def run_runtime(url: str, *args: Any, **kwargs: Any) -> None:
        urls.append(url)

    monkeypatch.setattr("fnstage.runtime.server.run_runtime", run_runtime)
    monkeypatch.delenv("FNSTAGE_DATABASE_URL", raising=False)
    return urls


def test_runtime_warns_about_a_password_in_argv_and_still_starts(started: list[str]) -> None:
    result = CliRunner().invoke(app, ["runtime", "--database-url", PG])
    assert result.exit_code == 0, result.output
    assert started == [PG]
    assert "visible to every local user" in result.stderr and "s3cret" not in result.stderr


def test_runtime_takes_the_url_from_the_environment_without_a_warning(started: list[str]) -> None:
    result = CliRunner().invoke(app, ["runtime"], env={"FNSTAGE_DATABASE_URL": PG})
    assert result.exit_code == 0 and started == [PG] and result.stderr == ""


def test_runtime_takes_the_url_from_a_file(started: list[str], tmp_path: Path) -> None:
    (tmp_path / "db-url").write_text(PG + "\n")
    result = CliRunner().invoke(app, ["runtime", "--database-url-file", str(tmp_path / "db-url")])
    assert result.exit_code == 0 and started == [PG] and result.stderr == ""


def test_runtime_reads_the_server_key_file_and_names_a_bad_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cryptography.fernet import Fernet

    rings: list[Any] = []
    monkeypatch.setattr(
        "fnstage.runtime.server.run_runtime", lambda *args, **kwargs: rings.append(kwargs["keyring"])
    )
    monkeypatch.delenv("FNSTAGE_SECRET_KEY", raising=False)
    key = tmp_path / "secret-key"
    key.write_text(Fernet.generate_key().decode() + "\n")
    args = ["runtime", "--database-url", "sqlite:///x.db", "--secret-key-file", str(key)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert rings[0].source == str(key) and len(rings[0].keys) == 1
    key.write_text("not a key\n")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "key 1 in" in result.stderr and "not a Fernet key" in result.stderr
