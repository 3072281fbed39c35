"""The core walk as a user does it: a real `fnstage up` process and the `fnstage` CLI on loopback."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fnstage.testing import UpProcess
from support.cli import Cli, write
from support.functions import INDEX, UTILS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with UpProcess(tmp_path_factory.mktemp("up")) as process:
        yield process


def test_the_core_walk_through_the_cli(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    cli.run("gateway", "create", "demo")
    src = write(tmp_path / "me", {"index.py": INDEX, "utils.py": UTILS})

    assert "version 1" in cli.run("push", str(src), "dev/user/me").stdout
    write(src, {"utils.py": UTILS.replace("Hello", "Hi")})
    out = cli.run("push", str(src), "dev/user/me", "--changelog", "Say hi").stdout
    assert "dev/user/me: version 1 -> 2" in out, out
    assert "unchanged" in cli.run("push", str(src), "dev/user/me").stdout

    cli.run("promote", "dev/user/me", "--to", "staging", "--semver", "1.0.0-rc.1", "--note", "QA round 1")
    cli.run("promote", "staging/user/me", "--to", "prod", "--semver", "1.0.0", "--note", "First release")

    write(src, {"utils.py": UTILS.replace("Hello", "Oops")})
    cli.run("push", str(src), "dev/user/me", "--changelog", "a bad change")
    cli.run("promote", "dev/user/me", "--to", "staging", "--semver", "1.0.1-rc.1", "--note", "QA round 2")
    cli.run(
        "release", "user/me", "--from", "staging", "--to", "prod", "--semver", "1.0.1", "--note", "Second"
    )

    cli.refused("rollback", "prod/user/me", "--to", "1.0.0", "--semver", "1.0.2", "--note", "", says="note")
    cli.refused(
        "rollback", "prod/user/me", "--to", "1.0.0", "--semver", "1.0.1", "--note", "x", says="not greater"
    )
    cli.run("rollback", "prod/user/me", "--to", "1.0.0", "--semver", "1.0.2", "--note", "1.0.1 broke login")

    history = cli.json("history", "prod/user/me")
    assert isinstance(history, dict)  # --json prints the API's answer: an object, entries in it
    entries = history["entries"]
    assert [(e["semver"], e["kind"]) for e in entries] == [
        ("1.0.2", "rollback"),
        ("1.0.1", "promote"),  # a release of staging's current version is a promotion: no rebuild
        ("1.0.0", "promote"),
    ]
    assert entries[0]["note"] == "1.0.1 broke login" and entries[0]["actor"] == "admin"
    table = cli.run("history", "prod/user/me").stdout
    assert "1.0.2" in table and "rollback" in table and "1.0.1 broke login" in table

    diff = cli.run("diff", "prod/user/me@1.0.1", "prod/user/me").stdout
    assert '-    return f"Oops, {name}!"' in diff and '+    return f"Hi, {name}!"' in diff

    status = cli.run("status", "user/me").stdout
    for text in ("1.0.2", "1.0.1-rc.1", "0.1.0", "1.0.1 broke login"):
        assert text in status

    pulled = tmp_path / "pulled"
    cli.run("pull", "prod/user/me", str(pulled))
    assert (pulled / "utils.py").read_text() == UTILS.replace("Hello", "Hi")  # 1.0.0's code is back

    listed = cli.json("ls")
    assert isinstance(listed, dict)
    listed = listed["functions"]
    assert sorted(f["name"] for f in listed) == ["dev/user/me", "prod/user/me", "staging/user/me"]


def test_refusals_are_one_clear_line_and_change_nothing(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    cli.run("gateway", "create", "refusals")
    cli.env["FNSTAGE_GATEWAY"] = "refusals"
    src = write(tmp_path / "fn", {"index.py": INDEX, "utils.py": UTILS})
    cli.run("push", str(src), "dev/user/me")

    cli.refused(
        "promote", "dev/user/me", "--to", "prod", "--semver", "1.0.0", "--note", "x", says="skips staging"
    )
    cli.refused("push", str(src), "prod/user/me", says="promote")
    bad = write(tmp_path / "bad", {"index.py": "def main(ctx):\n    return (\n"})
    cli.refused("push", str(bad), "dev/user/me", says="index.py:2")
    missing = write(tmp_path / "missing", {"index.py": "import requests\n\ndef main(ctx):\n    return 1\n"})
    cli.refused("push", str(missing), "dev/user/me", says="requests")
    write(src, {"utils.py": UTILS.replace("Hello", "Hey")})
    cli.refused("push", str(src), "dev/user/me", "--expected-version", "0", says="someone else saved")
    cli.refused(
        "promote",
        "dev/user/nobody",
        "--to",
        "staging",
        "--semver",
        "1.0.0",
        "--note",
        "x",
        says="no function",
    )
    cli.refused("gateway", "create", "refusals", says="exists already")
    cli.refused("gateway", "create", "Bad_Name", says="gateway")

    history = cli.json("history", "dev/user/me")
    assert isinstance(history, dict)
    entries = history["entries"]
    assert [e["version"] for e in entries] == [1]  # none of the refusals wrote anything

    cli.run("rename", "dev/user/me", "dev/user/profile")
    cli.run("rm", "dev/user/profile", "--yes")
    listed = cli.json("ls")
    assert isinstance(listed, dict) and listed["functions"] == []


def test_a_wrong_token_and_an_unreachable_server_are_clear(up: UpProcess) -> None:
    cli = Cli(up)
    cli.env["FNSTAGE_TOKEN"] = "fns_not_a_token"
    cli.refused("gateway", "ls", says="unknown token")
    cli.env["FNSTAGE_URL"] = "http://127.0.0.1:9"
    cli.refused("gateway", "ls", says="cannot reach")


def test_up_keeps_its_data_folder_private(up: UpProcess) -> None:
    """Tokens, the database and its WAL, and the runtime's log: the owner's alone (0700 and 0600)."""
    assert stat.S_IMODE(up.data_dir.stat().st_mode) == 0o700
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in up.data_dir.iterdir() if p.is_file()}
    assert {"fnstage.db", "fnstage.db-wal", "admin-token", "runtime.log"} <= set(files)
    assert files == dict.fromkeys(files, 0o600)
