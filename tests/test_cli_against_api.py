"""The CLI against the real HTTP API (create_app over a SQLite store) served by uvicorn on loopback.

The walk a user takes: gateway create, push, push again (version 1 -> 2), an unchanged push, promote,
history, diff, status, plus a teammate's concurrent save refused with 409.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from fnstage.api.app import create_app
from fnstage.cli.main import app
from fnstage.deps.environments import Environments
from fnstage.deps.uv import IndexSettings
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.store.store import Store
from support.wheels import wheelhouse

INDEX = 'from utils import greet\n\n\nasync def main(ctx):\n    return {"message": greet("world")}\n'
UTILS = 'def greet(name):\n    return f"Hello, {name}!"\n'


@pytest.fixture
def server(store: Store, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, admin token) of the API running in a thread on a free loopback port; dependencies come
    from a folder of wheels built here."""
    token = bootstrap_admin(store)
    wheels = wheelhouse(tmp_path / "wheels")
    settings = IndexSettings(find_links=(str(wheels),), no_index=True, cache_dir=str(tmp_path / "uv-cache"))
    environments = Environments(tmp_path / "environments", settings)
    assert token is not None
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(Services.create(store, environments=environments)), log_level="warning", lifespan="off"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def cli(server: tuple[str, str], tmp_path: Path) -> Callable[..., Result]:
    url, token = server
    runner = CliRunner()
    env = {
        "FNSTAGE_URL": url,
        "FNSTAGE_TOKEN": token,
        "FNSTAGE_GATEWAY": "demo",
        "FNSTAGE_CONFIG_DIR": str(tmp_path / "config"),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env)

    return invoke


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def test_walk_from_push_to_status(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert ok(cli("gateway", "create", "demo")) == "created gateway demo\n"
    assert "demo" in ok(cli("gateway", "ls"))

    folder = write(tmp_path / "me", {"index.py": INDEX, "utils.py": UTILS})
    assert ok(cli("push", str(folder), "dev/user/me")) == "dev/user/me: created version 1 (2 files)\n"

    write(folder, {"utils.py": UTILS.replace("Hello", "Hi")})
    assert ok(cli("push", str(folder), "dev/user/me", "-m", "friendlier")) == (
        "dev/user/me: version 1 -> 2 (2 files, 1 changed)\n"
    )
    assert ok(cli("push", str(folder), "dev/user/me")) == "unchanged: dev/user/me is already version 2\n"

    promoted = ok(cli("promote", "dev/user/me", "--semver", "1.0.0-rc.1", "--note", "QA build"))
    assert promoted.startswith("promoted dev/user/me → staging/user/me: version 1, semver 1.0.0-rc.1")

    history = ok(cli("history", "dev/user/me"))
    assert "friendlier" in history and "create" in history
    entries = json.loads(ok(cli("history", "dev/user/me", "--json")))["entries"]
    assert [e["version"] for e in entries] == sorted((e["version"] for e in entries), reverse=True)

    diff = ok(cli("diff", f"#{entries[-1]['id']}", "dev/user/me"))
    assert '-    return f"Hello, {name}!"' in diff and '+    return f"Hi, {name}!"' in diff
    assert "1 file changed (1 modified), 1 unchanged" in diff

    status = ok(cli("status", "user/me"))
    for expected in ("1.0.0-rc.1", "QA in progress", "in development", "not deployed", "QA build"):
        assert expected in status

    listed = ok(cli("ls"))
    assert "dev/user/me" in listed and "staging/user/me" in listed

    pulled = tmp_path / "pulled"
    ok(cli("pull", "staging/user/me", str(pulled)))
    assert (pulled / "utils.py").read_text() == UTILS.replace("Hello", "Hi")


def test_release_rollback_and_refusals(cli: Callable[..., Result], tmp_path: Path) -> None:
    ok(cli("gateway", "create", "demo"))
    folder = write(tmp_path / "me", {"index.py": INDEX, "utils.py": UTILS})
    ok(cli("push", str(folder), "dev/user/me"))
    ok(cli("promote", "dev/user/me", "--semver", "1.0.0-rc.1", "--note", "QA"))
    released = ok(
        cli("release", "user/me", "--from", "staging", "--to", "prod", "--semver", "1.0.0", "--note", "go")
    )
    assert "prod/user/me: version 1, semver 1.0.0" in released

    write(folder, {"utils.py": UTILS.replace("Hello", "Yo")})
    ok(cli("push", str(folder), "dev/user/me"))
    ok(cli("promote", "dev/user/me", "--semver", "1.0.1-rc.1", "--note", "QA 2"))
    ok(cli("release", "user/me", "--from", "staging", "--to", "prod", "--semver", "1.0.1", "--note", "yo"))
    back = ok(cli("rollback", "prod/user/me", "--to", "1.0.0", "--semver", "1.0.2", "--note", "yo is rude"))
    assert "prod/user/me: version 3, semver 1.0.2" in back
    same = ok(cli("diff", "prod/user/me@1.0.0", "prod/user/me"))
    assert "no differences" in same

    not_greater = cli(
        "release", "user/me", "--from", "staging", "--to", "prod", "--semver", "1.0.0", "--note", "x"
    )
    assert not_greater.exit_code == 1
    assert not_greater.stderr.startswith("error: ") and "(field: semver)" in not_greater.stderr
    assert not_greater.stderr.splitlines()[1] == "hint: the server suggests --semver 1.0.3 for prod"

    skip = cli("promote", "dev/user/me", "--to", "prod", "--semver", "2.0.0", "--note", "x")
    assert skip.exit_code == 1 and "skips staging" in skip.stderr


def test_a_teammates_save_is_not_overwritten(cli: Callable[..., Result], tmp_path: Path) -> None:
    ok(cli("gateway", "create", "demo"))
    mine = write(tmp_path / "mine", {"index.py": INDEX, "utils.py": UTILS})
    ok(cli("push", str(mine), "dev/user/me"))
    theirs = write(tmp_path / "theirs", {"index.py": INDEX, "utils.py": UTILS.replace("Hello", "Hey")})
    ok(cli("push", str(theirs), "dev/user/me"))  # version 2, saved by a teammate

    write(mine, {"utils.py": UTILS.replace("Hello", "Howdy")})
    stale = cli("push", str(mine), "dev/user/me", "--expected-version", "1")
    assert stale.exit_code == 1
    assert "(field: expected_version)" in stale.stderr.splitlines()[0]
    ok(cli("pull", "dev/user/me", str(tmp_path / "check")))
    assert "Hey" in (tmp_path / "check" / "utils.py").read_text()


def test_build_errors_and_unknown_things(cli: Callable[..., Result], tmp_path: Path) -> None:
    ok(cli("gateway", "create", "demo"))
    broken = write(tmp_path / "broken", {"index.py": "import fnpkg\n\ndef main(ctx):\n    return 1\n"})
    result = cli("push", str(broken), "dev/user/me")
    assert result.exit_code == 1
    assert "fnpkg" in result.stderr and "(field: files)" in result.stderr

    missing = cli("status", "user/me", "-g", "nope")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: ")

    logs = cli("logs", "dev/user/me")
    assert logs.exit_code == 1 and logs.stderr.startswith("error: ")

    bad_dep = cli("deps", "set", "fnpkg==")
    assert bad_dep.exit_code == 1 and "(field: dependencies)" in bad_dep.stderr
    unresolvable = cli("deps", "set", "fnpkg==3.0")
    assert unresolvable.exit_code == 1 and "fnpkg" in unresolvable.stderr
    ok(cli("deps", "set", "fnpkg==1.0"))
    assert ok(cli("deps", "show")).startswith("fnpkg==1.0\nlock ")
    ok(cli("deps", "add", "native-thing"))
    assert ok(cli("deps", "show")).startswith("fnpkg==1.0\nnative-thing\n")
    ok(cli("deps", "rm", "native-thing"))
    assert ok(cli("deps", "show")).startswith("fnpkg==1.0\nlock ")
    assert ok(cli("push", str(broken), "dev/user/me")) == "dev/user/me: created version 1 (1 file)\n"


def test_a_function_with_a_running_canary_is_neither_renamed_nor_deleted(
    cli: Callable[..., Result], server: tuple[str, str], tmp_path: Path
) -> None:
    """Its runtimes split its traffic between two of its versions: renaming or deleting it would pull
    the ground from under the canary. Refused (409) on the API and the CLI, naming the canary and how
    to end it; nothing changes; once aborted, both work."""
    import httpx

    src = write(tmp_path / "fn", {"index.py": INDEX, "utils.py": UTILS})
    ok(cli("gateway", "create", "demo"))
    ok(cli("push", str(src), "dev/user/me"))
    ok(cli("promote", "dev/user/me", "--to", "staging", "--semver", "1.0.0", "--note", "first"))
    write(src, {"utils.py": UTILS.replace("Hello", "Hi")})
    ok(cli("push", str(src), "dev/user/me"))
    ok(
        cli(
            "promote",
            "dev/user/me",
            "--to",
            "staging",
            "--semver",
            "1.1.0",
            "--note",
            "try",
            "--canary",
            "10%",
        )
    )
    url, token = server
    with httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}) as api:
        renamed = api.post("/gateways/demo/rename", json={"name": "staging/user/me", "new_name": "staging/x"})
        deleted = api.delete("/gateways/demo/functions/staging/user/me")
    for answer, doing in ((renamed, "renamed"), (deleted, "deleted")):
        assert answer.status_code == 409, answer.text
        message = answer.json()["error"]["message"]
        assert f"staging/user/me cannot be {doing} while a canary of staging/user/me (1.1.0" in message
        assert "10% of requests) is running" in message
        assert "`fnstage rollout abort staging/user/me`" in message
    for args in (("rename", "staging/user/me", "staging/x"), ("rm", "staging/user/me", "--yes")):
        refused = cli(*args)
        assert refused.exit_code == 1, refused.output
        assert "while a canary of staging/user/me" in refused.output
        assert "fnstage rollout abort staging/user/me" in refused.output
    assert "staging/user/me" in ok(cli("ls", "--env", "staging"))  # nothing changed

    ok(cli("rollout", "abort", "staging/user/me"))
    ok(cli("rename", "staging/user/me", "staging/x"))
    ok(cli("rm", "staging/x", "--yes"))
