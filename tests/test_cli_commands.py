"""Every command through CliRunner against a fake API (the client's transport seam): requests sent, output,
exit codes. The fake reads each request into an httpx.Request and answers with an httpx.Response, so the
tests read the bytes the CLI sends through a parser independent of the CLI's own."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from fnstage.cli import transport
from fnstage.cli.client import using_transport
from fnstage.cli.main import app

URL = "http://fnstage.test"
Handler = Callable[[httpx.Request], httpx.Response]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def api_error(
    status: int, code: str, message: str, field: str | None = None, details: Any = None
) -> httpx.Response:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details is not None:
        body["details"] = details
    return httpx.Response(status, json={"error": body})


class FakeApi:
    """Answers registered (method, path) routes and records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, response: Any = None, status: int = 200) -> None:
        def answer(_: httpx.Request) -> httpx.Response:
            return response if isinstance(response, httpx.Response) else httpx.Response(status, json=response)

        self.routes[(method, "/api/v1/" + path.lstrip("/"))] = answer

    def __call__(self, sent: transport.Request) -> transport.Response:
        request = httpx.Request(sent.method, sent.url, headers=dict(sent.headers), content=sent.body)
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.path))
        answer = api_error(404, "not_found", "Not Found") if handler is None else handler(request)
        return transport.Response(answer.status_code, answer.reason_phrase, answer.read())

    def sent(self, method: str | None = None) -> list[httpx.Request]:
        return [r for r in self.requests if method is None or r.method == method]

    def body(self, index: int = -1, method: str | None = None) -> Any:
        return json.loads(self.sent(method)[index].content)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def cli(api: FakeApi, tmp_path: Path) -> Callable[..., Result]:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, gateway: str | None = "demo") -> Result:
        env = {
            "FNSTAGE_URL": URL,
            "FNSTAGE_TOKEN": "fns_test",
            "FNSTAGE_GATEWAY": gateway,
            "FNSTAGE_CONFIG_DIR": str(tmp_path / "config"),
            "COLUMNS": "160",
            "NO_COLOR": "1",
        }
        with using_transport(api):
            return runner.invoke(app, list(args), env=env, input=input)

    return invoke


def function(version: int = 1, files: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    files = files if files is not None else {"index.py": "def main(ctx):\n    return 1\n"}
    return {
        "gateway": "demo",
        "name": "dev/user/me",
        "env": "dev",
        "base": "user/me",
        "version": version,
        "semver": "0.1.0",
        "entrypoint": "index.py",
        "file_hashes": {path: sha(text) for path, text in files.items()},
        "methods": ["GET"],
        "updated_at": "2026-11-26T12:00:00+00:00",
        "updated_by": "admin",
        **extra,
    }


def make_function_dir(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    return root


FILES = {"index.py": "from utils import x\n\ndef main(ctx):\n    return x\n", "utils.py": "x = 1\n"}


# --- configuration and transport errors --------------------------------------------------------


def test_requests_carry_the_token_and_go_under_api_v1(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "me", {"name": "admin", "is_admin": True})
    result = cli("whoami")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"admin (admin) at {URL}\n"
    request = api.requests[0]
    assert str(request.url) == f"{URL}/api/v1/me"
    assert request.headers["authorization"] == "Bearer fns_test"


def test_connection_refused_says_to_start_fnstage(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"FNSTAGE_URL": f"http://127.0.0.1:{port}", "FNSTAGE_CONFIG_DIR": str(tmp_path), "NO_COLOR": "1"}
    result = CliRunner().invoke(app, ["gateway", "ls"], env=env)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: cannot reach fnstage at http://127.0.0.1:{port}: is `fnstage up` running?\n"
        "hint: the URL comes from FNSTAGE_URL: start that instance, or point the CLI at another with "
        "`fnstage context use URL` (`fnstage context ls` lists them) or FNSTAGE_URL\n"
    )


def test_missing_gateway_is_an_error_before_any_request(cli: Callable[..., Result], api: FakeApi) -> None:
    result = cli("ls", gateway=None)
    assert result.exit_code == 1
    assert "no gateway given: pass -g/--gateway ID or set FNSTAGE_GATEWAY" in result.stderr
    assert api.requests == []


def test_gateway_option_wins_over_environment(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/other/functions", {"functions": []})
    result = cli("ls", "-g", "other")
    assert result.exit_code == 0, result.output
    assert "no functions on gateway other" in result.stdout


def test_unauthorized_prints_the_api_message_and_a_hint(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways", api_error(401, "unauthorized", "unknown token"))
    result = cli("gateway", "ls")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: unknown token",
        "hint: the token was refused: set FNSTAGE_TOKEN to a valid token",
    ]


def test_non_json_answer_is_reported(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways", httpx.Response(200, text="<html>proxy</html>"))
    result = cli("gateway", "ls")
    assert result.exit_code == 1
    assert "is not JSON" in result.stderr


def test_error_without_envelope_is_still_one_line(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways", httpx.Response(502, text="Bad Gateway"))
    result = cli("gateway", "ls")
    assert result.exit_code == 1
    assert result.stderr == f"error: HTTP 502 from {URL}: Bad Gateway\n"


# --- gateways and dependencies -----------------------------------------------------------------

GATEWAY = {
    "id": "demo",
    "allow_dev_to_prod": False,
    "history_limit": None,
    "dependencies": ["requests==2.32.3"],
    "created_at": "2026-11-26T12:00:00+00:00",
    "created_by": "admin",
}


def test_gateway_create(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("POST", "gateways", {**GATEWAY, "allow_dev_to_prod": True}, status=201)
    result = cli("gateway", "create", "demo", "--allow-dev-to-prod")
    assert result.exit_code == 0, result.output
    assert api.body() == {"id": "demo", "allow_dev_to_prod": True}
    assert result.stdout == "created gateway demo\n"


def test_gateway_create_conflict(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("POST", "gateways", api_error(409, "conflict", "gateway demo exists already", "id"))
    result = cli("gateway", "create", "demo")
    assert result.exit_code == 1
    assert result.stderr == "error: gateway demo exists already (field: id)\n"


def test_gateway_ls_table_and_json(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways", {"gateways": [GATEWAY]})
    table = cli("gateway", "ls")
    assert table.exit_code == 0, table.output
    assert "demo" in table.stdout and "via staging" in table.stdout
    as_json = cli("gateway", "ls", "--json")
    assert json.loads(as_json.stdout) == {"gateways": [GATEWAY]}


def test_gateway_show(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo", GATEWAY)
    result = cli("gateway", "show", "demo")
    assert result.exit_code == 0, result.output
    assert "requests==2.32.3" in result.stdout and "only through staging" in result.stdout


def test_gateway_set_sends_only_given_options(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("PATCH", "gateways/demo", {**GATEWAY, "history_limit": 50})
    result = cli("gateway", "set", "demo", "--history-limit", "50")
    assert result.exit_code == 0, result.output
    assert api.body() == {"history_limit": 50}
    cli("gateway", "set", "demo", "--no-allow-dev-to-prod")
    assert api.body() == {"allow_dev_to_prod": False}


def test_gateway_set_without_options_is_refused(cli: Callable[..., Result], api: FakeApi) -> None:
    result = cli("gateway", "set", "demo")
    assert result.exit_code == 1
    assert "nothing to change" in result.stderr
    assert api.requests == []


def test_deps_set_and_show(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on(
        "PUT",
        "gateways/demo/dependencies",
        {**GATEWAY, "dependencies": ["httpx==0.28.1", "requests==2.32.3"]},
    )
    result = cli("deps", "set", "requests==2.32.3", "httpx==0.28.1")
    assert result.exit_code == 0, result.output
    assert api.body() == {"dependencies": ["requests==2.32.3", "httpx==0.28.1"]}
    assert result.stdout == "demo dependencies: httpx==0.28.1, requests==2.32.3\n"
    api.on("GET", "gateways/demo/dependencies", {"dependencies": ["requests==2.32.3"]})
    assert cli("deps", "show").stdout == "requests==2.32.3\n"


def test_deps_set_invalid_pin_is_one_line(cli: Callable[..., Result], api: FakeApi) -> None:
    message = "invalid dependency 'requests': pin an exact version as NAME==VERSION, such as requests==2.32.3"
    api.on("PUT", "gateways/demo/dependencies", api_error(422, "invalid", message, "dependencies"))
    result = cli("deps", "set", "requests")
    assert result.exit_code == 1
    assert result.stderr == f"error: {message} (field: dependencies)\n"


# --- push --------------------------------------------------------------------------------------


def test_push_creates_a_new_function(cli: Callable[..., Result], api: FakeApi, tmp_path: Path) -> None:
    folder = make_function_dir(tmp_path / "me", FILES)
    api.on("GET", "gateways/demo/functions/dev/user/me", api_error(404, "not_found", "dev/user/me not found"))
    api.on(
        "PUT",
        "gateways/demo/functions/dev/user/me",
        {"function": function(1, FILES), "history": {"id": 1}, "changed": True},
        status=201,
    )
    result = cli("push", str(folder), "dev/user/me")
    assert result.exit_code == 0, result.output
    assert result.stdout == "dev/user/me: created version 1 (2 files)\n"
    assert api.body(method="PUT") == {"files": FILES, "entrypoint": "index.py", "expected_version": 0}


def test_push_wait_polls_the_rollout_of_the_version_it_saved(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    # --wait sent `params={'version': 2}` as one query parameter named "params", so the API answered
    # for whatever version was current: a teammate's later save could end the wait, or fail it.
    folder = make_function_dir(tmp_path / "me", {**FILES, "utils.py": "x = 2\n"})
    api.on("GET", "gateways/demo/functions/dev/user/me", function(1, FILES))
    api.on("PUT", "gateways/demo/functions/dev/user/me", {"function": function(2), "changed": True})
    rollout = {"done": True, "failed": False, "live": 1, "active": 1, "latency_ms": 7, "runtimes": []}
    api.on("GET", "gateways/demo/rollout/dev/user/me", rollout)
    result = cli("push", str(folder), "dev/user/me", "--wait")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "live on 1/1 runtimes in 7 ms"
    polled = api.sent("GET")[-1]
    assert polled.url.path == "/api/v1/gateways/demo/rollout/dev/user/me"
    assert dict(polled.url.params) == {"version": "2"}


def test_push_updates_with_the_version_it_read(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    folder = make_function_dir(tmp_path / "me", {**FILES, "utils.py": "x = 2\n", "extra.py": ""})
    api.on("GET", "gateways/demo/functions/dev/user/me", function(4, FILES))
    api.on(
        "PUT",
        "gateways/demo/functions/dev/user/me",
        {"function": function(5), "history": None, "changed": True},
    )
    result = cli(
        "push", str(folder), "dev/user/me", "--semver", "0.2.0", "-m", "faster", "--methods", "get, post"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "dev/user/me: version 4 -> 5 (3 files, 2 changed)\n"
    body = api.body(method="PUT")
    assert body["expected_version"] == 4
    assert (body["semver"], body["note"], body["methods"]) == ("0.2.0", "faster", ["GET", "POST"])
    assert set(body["files"]) == {"index.py", "utils.py", "extra.py"}


@pytest.mark.parametrize("spelling", ["--note", "-m", "--changelog"])
def test_push_takes_the_note_as_every_release_command_does(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path, spelling: str
) -> None:
    folder = make_function_dir(tmp_path / "me", FILES)
    api.on("GET", "gateways/demo/functions/dev/user/me", function(4, FILES))
    api.on("PUT", "gateways/demo/functions/dev/user/me", {"function": function(5), "changed": True})
    result = cli("push", str(folder), "dev/user/me", spelling, "faster")
    assert result.exit_code == 0, result.output
    assert api.body(method="PUT")["note"] == "faster"


def test_push_refuses_two_different_notes(cli: Callable[..., Result], api: FakeApi, tmp_path: Path) -> None:
    folder = make_function_dir(tmp_path / "me", FILES)
    result = cli("push", str(folder), "dev/user/me", "--note", "a", "--changelog", "b")
    assert result.exit_code == 1 and "--note and --changelog are one option" in result.stderr
    assert api.requests == []


def test_every_command_s_help_fits_80_columns() -> None:
    import typer.main
    from typer.testing import CliRunner

    from fnstage.cli.main import app

    def commands(group: Any, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in getattr(group, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                found += commands(sub, [*path, name])
        return found

    runner = CliRunner()
    for path in commands(typer.main.get_command(app), []):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
        assert result.exit_code == 0, (path, result.output)
        wide = [line for line in result.output.splitlines() if len(line) > 80]
        assert wide == [], f"fnstage {' '.join(path)} --help: {wide}"


def test_push_unchanged_creates_nothing(cli: Callable[..., Result], api: FakeApi, tmp_path: Path) -> None:
    folder = make_function_dir(tmp_path / "me", FILES)
    make_function_dir(folder, {"__pycache__/utils.py": "junk", ".venv/x.py": "junk"})
    api.on("GET", "gateways/demo/functions/dev/user/me", function(3, FILES))
    result = cli("push", str(folder), "dev/user/me")
    assert result.exit_code == 0, result.output
    assert result.stdout == "unchanged: dev/user/me is already version 3\n"
    assert api.sent("PUT") == []


def test_push_same_files_with_semver_still_saves(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    folder = make_function_dir(tmp_path / "me", FILES)
    api.on("GET", "gateways/demo/functions/dev/user/me", function(3, FILES))
    api.on("PUT", "gateways/demo/functions/dev/user/me", {"function": function(4), "changed": True})
    result = cli("push", str(folder), "dev/user/me", "--semver", "0.3.0")
    assert result.exit_code == 0, result.output
    assert result.stdout == "dev/user/me: version 3 -> 4 (2 files, 0 changed)\n"


def test_push_keeps_the_functions_entrypoint(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    files = {"app.py": "def main(ctx):\n    return 1\n"}
    folder = make_function_dir(tmp_path / "me", {**files, "more.py": ""})
    api.on("GET", "gateways/demo/functions/dev/user/me", function(2, files, entrypoint="app.py"))
    api.on("PUT", "gateways/demo/functions/dev/user/me", {"function": function(3), "changed": True})
    assert cli("push", str(folder), "dev/user/me").exit_code == 0
    assert api.body(method="PUT")["entrypoint"] == "app.py"


def test_push_missing_entrypoint_is_refused_locally(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    folder = make_function_dir(tmp_path / "me", {"main.py": "x"})
    api.on("GET", "gateways/demo/functions/dev/user/me", api_error(404, "not_found", "dev/user/me not found"))
    result = cli("push", str(folder), "dev/user/me")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: entrypoint index.py is not among the 1 file read from {folder} (field: entrypoint)"
    )
    assert api.sent("PUT") == []


def test_push_stale_version_is_refused_with_409(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    folder = make_function_dir(tmp_path / "me", {**FILES, "utils.py": "x = 3\n"})
    api.on("GET", "gateways/demo/functions/dev/user/me", function(4, FILES))
    message = (
        "dev/user/me is at version 5 but this save was based on version 4: someone else saved "
        "meanwhile; pull, merge and save again"
    )
    api.on(
        "PUT",
        "gateways/demo/functions/dev/user/me",
        api_error(409, "stale_version", message, "expected_version", {"current_version": 5}),
    )
    result = cli("push", str(folder), "dev/user/me")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {message} (field: expected_version)"
    assert lines[1].startswith("hint: pull the current version")


def test_push_expected_version_option_overrides(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    folder = make_function_dir(tmp_path / "me", {**FILES, "utils.py": "x = 3\n"})
    api.on("GET", "gateways/demo/functions/dev/user/me", function(4, FILES))
    api.on("PUT", "gateways/demo/functions/dev/user/me", {"function": function(5), "changed": True})
    assert cli("push", str(folder), "dev/user/me", "--expected-version", "2").exit_code == 0
    assert api.body(method="PUT")["expected_version"] == 2


def test_push_build_failure_lists_problems(cli: Callable[..., Result], api: FakeApi, tmp_path: Path) -> None:
    folder = make_function_dir(tmp_path / "me", FILES)
    api.on("GET", "gateways/demo/functions/dev/user/me", api_error(404, "not_found", "dev/user/me not found"))
    details = [
        {"file": "index.py", "line": 1, "col": 1, "message": "cannot resolve `requests`"},
        {"file": "utils.py", "line": 2, "col": 5, "message": "invalid syntax"},
    ]
    api.on(
        "PUT",
        "gateways/demo/functions/dev/user/me",
        api_error(
            422,
            "build_failed",
            "index.py:1:1: cannot resolve `requests` (and 1 more problem)",
            "files",
            details,
        ),
    )
    result = cli("push", str(folder), "dev/user/me")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: index.py:1:1: cannot resolve `requests` (and 1 more problem) (field: files)",
        "  index.py:1:1: cannot resolve `requests`",
        "  utils.py:2:5: invalid syntax",
    ]


def test_push_to_staging_shows_the_policy_message(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    folder = make_function_dir(tmp_path / "me", FILES)
    message = "staging receives code only through promote or release; save (push) to dev, then promote"
    api.on("GET", "gateways/demo/functions/staging/user/me", api_error(404, "not_found", "not found"))
    api.on("PUT", "gateways/demo/functions/staging/user/me", api_error(409, "policy", message, "name"))
    result = cli("push", str(folder), "staging/user/me")
    assert result.exit_code == 1
    assert result.stderr == f"error: {message} (field: name)\n"


def test_push_invalid_name_and_missing_folder(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    bad_name = cli("push", str(tmp_path), "user")
    assert bad_name.exit_code == 1 and "expected ENV/PATH such as dev/user/me" in bad_name.stderr
    missing = cli("push", str(tmp_path / "nope"), "dev/user/me")
    assert missing.exit_code == 1 and "is not a folder" in missing.stderr
    assert api.requests == []


def test_push_when_gateway_is_missing(cli: Callable[..., Result], api: FakeApi, tmp_path: Path) -> None:
    folder = make_function_dir(tmp_path / "me", FILES)
    missing = api_error(404, "not_found", "gateway demo does not exist", "gateway")
    api.on("GET", "gateways/demo/functions/dev/user/me", missing)
    api.on("PUT", "gateways/demo/functions/dev/user/me", missing)
    result = cli("push", str(folder), "dev/user/me")
    assert result.exit_code == 1
    assert result.stderr == "error: gateway demo does not exist (field: gateway)\n"


# --- pull, ls ----------------------------------------------------------------------------------


def test_pull_writes_files(cli: Callable[..., Result], api: FakeApi, tmp_path: Path) -> None:
    api.on(
        "GET",
        "gateways/demo/functions/prod/user/me",
        {**function(2, FILES), "semver": "1.0.0", "files": FILES},
    )
    result = cli("pull", "prod/user/me", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert api.requests[0].url.params["files"] == "true"
    assert (tmp_path / "out/utils.py").read_text() == "x = 1\n"
    assert result.stdout == f"pulled prod/user/me version 2 (1.0.0) into {tmp_path / 'out'}: 2 files\n"


def test_pull_refuses_non_empty_folder_unless_forced(
    cli: Callable[..., Result], api: FakeApi, tmp_path: Path
) -> None:
    folder = make_function_dir(tmp_path / "out", {"index.py": "mine", "old.py": "stale"})
    api.on("GET", "gateways/demo/functions/dev/user/me", {**function(2, FILES), "files": FILES})
    refused = cli("pull", "dev/user/me", str(folder))
    assert refused.exit_code == 1 and "is not empty" in refused.stderr
    assert (folder / "index.py").read_text() == "mine"
    forced = cli("pull", "dev/user/me", str(folder), "--force")
    assert forced.exit_code == 0, forced.output
    assert (folder / "index.py").read_text() == FILES["index.py"]
    assert "deleted 1 file not in the function: old.py" in forced.stdout


def test_pull_missing_function(cli: Callable[..., Result], api: FakeApi, tmp_path: Path) -> None:
    api.on(
        "GET",
        "gateways/demo/functions/dev/user/me",
        api_error(404, "not_found", "function dev/user/me does not exist", "name"),
    )
    result = cli("pull", "dev/user/me", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr == "error: function dev/user/me does not exist (field: name)\n"
    assert not (tmp_path / "out").exists()


def test_ls_filters_by_environment(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo/functions", {"functions": [function(3, FILES)]})
    result = cli("ls", "--env", "dev")
    assert result.exit_code == 0, result.output
    assert api.requests[0].url.params["env"] == "dev"
    assert "dev/user/me" in result.stdout
    assert cli("ls").exit_code == 0
    assert "env" not in api.requests[-1].url.params


def test_ls_rejects_unknown_environment(cli: Callable[..., Result], api: FakeApi) -> None:
    result = cli("ls", "--env", "qa")
    assert result.exit_code == 2
    assert api.requests == []


# --- releases ----------------------------------------------------------------------------------


def released(name: str, version: int, semver: str, history_id: int) -> dict[str, Any]:
    return {"function": {**function(version), "name": name, "semver": semver}, "history": {"id": history_id}}


def options(source_env: str, default: str | None, **refusals: str) -> dict[str, Any]:
    """A release-options answer: every environment allowed (suggesting 1.0.0) unless refused."""
    targets = [
        {
            "env": env,
            "refusal": refusals.get(env),
            "is_rollback": False,
            "current_semver": None,
            "suggested_semver": None if env in refusals else "1.0.0",
            "needs_note_and_greater_semver": env != "dev",
            "semver_problem": None,
        }
        for env in ("dev", "staging", "prod")
    ]
    source = {"env": source_env, "history_id": None, "semver": "0.1.0"}
    return {"base": "user/me", "source": source, "targets": targets, "default_target": default}


def test_promote_defaults_to_the_target_the_server_names(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo/release-options/user/me", options("dev", "staging", dev="already"))
    api.on("POST", "gateways/demo/promote", released("staging/user/me", 1, "1.0.0-rc.1", 12))
    result = cli("promote", "dev/user/me", "--semver", "1.0.0-rc.1", "--note", "QA build")
    assert result.exit_code == 0, result.output
    assert api.sent("GET")[0].url.params["source_env"] == "dev"
    assert api.body(method="POST") == {
        "name": "dev/user/me",
        "target": "staging",
        "semver": "1.0.0-rc.1",
        "note": "QA build",
    }
    assert result.stdout == (
        "promoted dev/user/me → staging/user/me: version 1, semver 1.0.0-rc.1 (history #12)\n"
    )


def test_promote_policy_refusal(cli: Callable[..., Result], api: FakeApi) -> None:
    message = (
        "dev -> prod skips staging: promote to staging first, or let the gateway allow dev -> prod "
        "(gateway setting allow_dev_to_prod)"
    )
    api.on("POST", "gateways/demo/promote", api_error(409, "policy", message, "target"))
    result = cli("promote", "dev/user/me", "--to", "prod", "--semver", "1.0.0", "--note", "x")
    assert result.exit_code == 1
    assert result.stderr == f"error: {message} (field: target)\n"


def test_promote_from_prod_has_nowhere_to_go(cli: Callable[..., Result], api: FakeApi) -> None:
    refused = {"dev": "forward only: prod -> dev is not", "staging": "forward only", "prod": "already"}
    api.on("GET", "gateways/demo/release-options/user/me", options("prod", None, **refused))
    result = cli("promote", "prod/user/me")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: nothing to promote prod/user/me to (dev: forward only: prod")
    assert api.sent("POST") == []


def test_release_without_to_lists_where_the_server_allows(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo/release-options/user/me", options("dev", "staging", prod="skips staging"))
    result = cli("release", "user/me", "--from", "dev")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "user/me from dev (0.1.0) can go to:"
    assert lines[1].split() == ["TARGET", "NOW", "RELEASE"]
    assert "yes: --semver 1.0.0" in lines[3] and lines[4].split()[-2:] == ["skips", "staging"]
    assert api.sent("POST") == []


def test_a_semver_refusal_carries_the_server_s_suggestion(cli: Callable[..., Result], api: FakeApi) -> None:
    message = "a semver is required for a release to prod: it must be greater than the target's current one"
    api.on("POST", "gateways/demo/release", api_error(422, "invalid", message, "semver"))
    api.on("GET", "gateways/demo/release-options/user/me", options("staging", "prod"))
    result = cli("release", "user/me", "--from", "staging", "--to", "prod", "--note", "go")
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"error: {message} (field: semver)\nhint: the server suggests --semver 1.0.0 for prod\n"
    )


def test_release_from_an_environment(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("POST", "gateways/demo/release", released("prod/user/me", 1, "1.0.0", 14))
    result = cli(
        "release", "user/me", "--from", "staging", "--to", "prod", "--semver", "1.0.0", "--note", "go"
    )
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "base": "user/me",
        "source_env": "staging",
        "source_history_id": None,
        "target": "prod",
        "semver": "1.0.0",
        "note": "go",
    }
    assert result.stdout == "released staging → prod/user/me: version 1, semver 1.0.0 (history #14)\n"


def test_release_from_a_history_entry_reads_its_environment(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo/history-entries/42", {"id": 42, "env": "staging", "base": "user/me"})
    api.on("POST", "gateways/demo/release", released("prod/user/me", 2, "1.0.1", 15))
    result = cli("release", "user/me", "--from", "#42", "--to", "prod", "--semver", "1.0.1", "--note", "go")
    assert result.exit_code == 0, result.output
    body = api.body(method="POST")
    assert (body["source_env"], body["source_history_id"]) == ("staging", 42)


def test_release_from_unknown_source(cli: Callable[..., Result], api: FakeApi) -> None:
    result = cli("release", "user/me", "--from", "qa", "--to", "prod")
    assert result.exit_code == 1
    assert "neither an environment" in result.stderr and "(field: from)" in result.stderr
    assert api.requests == []


def test_release_semver_not_greater(cli: Callable[..., Result], api: FakeApi) -> None:
    message = (
        "semver 1.0.0 is not greater than prod's current 1.0.0: a release always moves the version "
        "forward, even when it brings old code back"
    )
    api.on("POST", "gateways/demo/release", api_error(409, "policy", message, "semver"))
    result = cli(
        "release", "user/me", "--from", "staging", "--to", "prod", "--semver", "1.0.0", "--note", "x"
    )
    assert result.exit_code == 1
    assert result.stderr == f"error: {message} (field: semver)\n"


def test_release_without_note(cli: Callable[..., Result], api: FakeApi) -> None:
    message = "a release note is required for staging and prod releases and for every rollback"
    api.on("POST", "gateways/demo/release", api_error(422, "invalid", message, "note"))
    result = cli("release", "user/me", "--from", "staging", "--to", "prod", "--semver", "1.0.1")
    assert result.exit_code == 1
    assert result.stderr == f"error: {message} (field: note)\n"
    assert api.body()["note"] is None


@pytest.mark.parametrize(
    ("to", "semver_ref", "history_ref"), [("1.0.0", "1.0.0", None), ("#42", None, 42), ("42", None, 42)]
)
def test_rollback_by_semver_or_history_id(
    cli: Callable[..., Result], api: FakeApi, to: str, semver_ref: str | None, history_ref: int | None
) -> None:
    api.on("POST", "gateways/demo/rollback", released("prod/user/me", 4, "1.0.2", 20))
    result = cli("rollback", "prod/user/me", "--to", to, "--semver", "1.0.2", "--note", "1.0.1 breaks login")
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "name": "prod/user/me",
        "to_semver": semver_ref,
        "to_history_id": history_ref,
        "semver": "1.0.2",
        "note": "1.0.1 breaks login",
    }
    assert result.stdout == f"rolled back to {to}: prod/user/me: version 4, semver 1.0.2 (history #20)\n"


# --- history, diff, status ---------------------------------------------------------------------

ENTRY = {
    "id": 7,
    "version": 3,
    "semver": "1.0.2",
    "kind": "rollback",
    "created_at": "2026-11-26T12:00:00+00:00",
    "actor": "ana",
    "note": "1.0.1 breaks login",
}


def test_history_table_paging_and_json(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo/history/prod/user/me", {"entries": [ENTRY], "next_before": 7})
    result = cli("history", "prod/user/me", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert api.requests[0].url.params["limit"] == "1"
    assert "#7" in result.stdout and "1.0.1 breaks login" in result.stdout and "rollback" in result.stdout
    assert "fnstage history prod/user/me --before 7" in result.stdout
    assert json.loads(cli("history", "prod/user/me", "--json").stdout)["entries"] == [ENTRY]


def test_history_empty(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo/history/prod/user/me", {"entries": [], "next_before": None})
    assert cli("history", "prod/user/me").stdout == "no history for prod/user/me\n"


def test_diff_sends_refs_and_prints_a_unified_diff(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on(
        "GET",
        "gateways/demo/diff",
        {
            "a": {"ref": "prod/user/me@1.0.0", "label": "prod/user/me@1.0.0"},
            "b": {"ref": "dev/user/me", "label": "dev/user/me"},
            "files": [{"path": "utils.py", "status": "modified", "a": "x = 1\n", "b": "x = 2\n"}],
        },
    )
    result = cli("diff", "prod/user/me@1.0.0", "dev/user/me")
    assert result.exit_code == 0, result.output
    params = api.requests[0].url.params
    assert (params["a"], params["b"]) == ("prod/user/me@1.0.0", "dev/user/me")
    assert "-x = 1\n+x = 2" in result.stdout
    assert result.stdout.rstrip().endswith("1 file changed (1 modified)")


def test_diff_history_id_ref_is_url_encoded(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo/diff", {"a": {}, "b": {}, "files": []})
    assert cli("diff", "#42", "dev/user/me").exit_code == 0
    assert api.requests[0].url.params["a"] == "#42"


def test_diff_unknown_ref(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo/diff", api_error(404, "not_found", "prod/user/me has no release 9.9.9", "a"))
    result = cli("diff", "prod/user/me@9.9.9", "dev/user/me")
    assert result.exit_code == 1
    assert result.stderr == "error: prod/user/me has no release 9.9.9 (field: a)\n"


def test_status_shows_the_three_environments(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on(
        "GET",
        "gateways/demo/overview/user/me",
        {
            "base": "user/me",
            "environments": {
                "dev": {**function(5), "state": "in development", "note": None},
                "staging": None,
                "prod": {**function(2), "semver": "1.0.0", "state": "serving", "note": "first release"},
            },
        },
    )
    result = cli("status", "user/me")
    assert result.exit_code == 0, result.output
    for expected in ("dev", "staging", "prod", "in development", "not deployed", "serving", "first release"):
        assert expected in result.stdout
    assert json.loads(cli("status", "user/me", "--json").stdout)["base"] == "user/me"


# --- rename, rm, logs, up ----------------------------------------------------------------------


def test_rename(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on(
        "POST",
        "gateways/demo/rename",
        {"function": {**function(4), "name": "dev/user/profile"}, "history": {"id": 9}},
    )
    result = cli("rename", "dev/user/me", "dev/user/profile")
    assert result.exit_code == 0, result.output
    assert api.body() == {"name": "dev/user/me", "new_name": "dev/user/profile"}
    assert result.stdout == "renamed dev/user/me → dev/user/profile (version 4)\n"


def test_rename_onto_an_existing_name(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on(
        "POST",
        "gateways/demo/rename",
        api_error(409, "conflict", "dev/user/profile exists already", "new_name"),
    )
    result = cli("rename", "dev/user/me", "dev/user/profile")
    assert result.exit_code == 1
    assert result.stderr == "error: dev/user/profile exists already (field: new_name)\n"


def test_rm_asks_for_confirmation(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("DELETE", "gateways/demo/functions/dev/user/me", {"deleted": "dev/user/me", "history": {"id": 11}})
    declined = cli("rm", "dev/user/me", input="n\n")
    assert declined.exit_code == 1
    assert api.requests == []
    accepted = cli("rm", "dev/user/me", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert accepted.stdout.endswith("deleted dev/user/me (history #11 records it)\n")


def test_rm_with_yes(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("DELETE", "gateways/demo/functions/dev/user/me", {"deleted": "dev/user/me", "history": {"id": 11}})
    result = cli("rm", "dev/user/me", "--yes")
    assert result.exit_code == 0, result.output
    assert [r.method for r in api.requests] == ["DELETE"]


def test_logs_without_a_logs_endpoint(cli: Callable[..., Result], api: FakeApi) -> None:
    result = cli("logs", "dev/user/me")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: this fnstage server does not offer invocation logs yet (no logs endpoint at {URL})\n"
    )


def test_logs_of_a_missing_function_names_it(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways/demo/logs/dev/user/me", api_error(404, "not_found", "dev/user/me does not exist"))
    result = cli("logs", "dev/user/me")
    assert result.stderr == "error: dev/user/me does not exist\n"


def test_logs_lists_invocations(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on(
        "GET",
        "gateways/demo/logs/dev/user/me",
        {
            "invocations": [
                {  # as the API answers (responses.Invocations)
                    "id": 7,
                    "request_id": "0f3a",
                    "time": 1796256000.0,
                    "version": 2,
                    "status": 200,
                    "duration_ms": 3,
                    "lines": ["hello from main"],
                    "error": None,
                    "trigger": None,
                },
            ]
        },
    )
    result = cli("logs", "dev/user/me")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["WHEN", "STATUS", "DURATION", "VERSION", "REQUEST", "ID"]
    assert result.stdout.splitlines()[1].split()[-5:] == ["200", "3", "ms", "v2", "0f3a"]
    assert "hello from main" in result.stdout


def test_logs_without_invocations_says_whether_filters_left_none(
    cli: Callable[..., Result], api: FakeApi
) -> None:
    """ "recorded yet" would be untrue of a function whose invocations only the filters left out."""
    api.on("GET", "gateways/demo/logs/dev/user/me", {"invocations": []})
    assert cli("logs", "dev/user/me").stdout == "no invocations of dev/user/me recorded yet\n"
    filtered = cli("logs", "dev/user/me", "--status", "error", "--since", "10m")
    assert filtered.stdout == "no invocations of dev/user/me match --status error --since 10m\n"


def test_up_calls_serve_up(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys
    import types

    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("fnstage.server")
    fake.serve_up = lambda **kwargs: calls.append(kwargs)
    monkeypatch.setitem(sys.modules, "fnstage.server", fake)
    result = cli("up", "--data", str(tmp_path / "data"), "--port", "9000")
    assert result.exit_code == 0, result.output
    assert calls == [
        {
            "data_dir": tmp_path / "data",
            "host": "127.0.0.1",
            "port": 9000,
            "runtime_port": 8471,
            "database_url": None,
            "with_runtime": True,
            "catch_up": timedelta(seconds=900),
            "secret_key_file": None,
            "metrics_port": None,
            "runtime_metrics_port": None,
            "metrics_host": "127.0.0.1",
            "log_format": "text",
        }
    ]
    calls.clear()
    args = ["--metrics-port", "9470", "--runtime-metrics-port", "9471", "--log-format", "json"]
    result = cli("up", "--data", str(tmp_path / "data"), *args)
    assert result.exit_code == 0, result.output
    assert calls[0]["metrics_port"] == 9470 and calls[0]["runtime_metrics_port"] == 9471
    assert calls[0]["log_format"] == "json"
    calls.clear()
    result = cli("up", "--log-format", "yaml")
    assert result.exit_code != 0 and "use text or json" in result.output and calls == []
    calls.clear()
    result = cli("up", "--data", str(tmp_path / "data"), "--secret-key-file", str(tmp_path / "key"))
    assert result.exit_code == 0 and calls[0]["secret_key_file"] == tmp_path / "key"
    calls.clear()
    result = cli("up", "--data", str(tmp_path / "data"), "--no-runtime", "--catch-up", "60")
    assert result.exit_code == 0, result.output
    assert calls[0]["with_runtime"] is False and calls[0]["catch_up"] == timedelta(seconds=60)
    calls.clear()
    result = cli("up", "--catch-up", "-1")
    assert result.exit_code != 0 and calls == []


def test_help_texts(cli: Callable[..., Result]) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("push", "pull", "promote", "release", "rollback", "history", "diff", "status", "gateway"):
        assert command in result.stdout
    assert "--semver" in cli("rollback", "--help").stdout


def test_framework_validation_error_names_the_field(cli: Callable[..., Result], api: FakeApi) -> None:
    detail = [{"loc": ["body", "history_limit"], "msg": "Input should be greater than or equal to 1"}]
    api.on("PATCH", "gateways/demo", httpx.Response(422, json={"detail": detail}))
    result = cli("gateway", "set", "demo", "--allow-dev-to-prod")
    assert result.exit_code == 1
    assert result.stderr == "error: Input should be greater than or equal to 1 (field: history_limit)\n"


def test_framework_error_string_detail(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("GET", "gateways", httpx.Response(405, json={"detail": "Method Not Allowed"}))
    result = cli("gateway", "ls")
    assert result.exit_code == 1
    assert result.stderr == f"error: HTTP 405 from {URL}: Method Not Allowed\n"


def test_status_with_an_environment_prefix_suggests_the_base(
    cli: Callable[..., Result], api: FakeApi
) -> None:
    empty = {"base": "dev/user/me", "environments": {"dev": None, "staging": None, "prod": None}}
    api.on("GET", "gateways/demo/overview/dev/user/me", empty)
    result = cli("status", "dev/user/me")
    assert result.exit_code == 0, result.output
    assert "did you mean `fnstage status user/me`?" in result.stdout


@pytest.mark.parametrize(
    ("args", "api_maximum"),
    [(("history", "dev/user/me", "--limit"), 200), (("gateway", "set", "demo", "--history-limit"), 1000)],
)
def test_cli_limits_agree_with_the_api(
    cli: Callable[..., Result], api: FakeApi, args: tuple[str, ...], api_maximum: int
) -> None:
    result = cli(*args, str(api_maximum + 1))
    assert (
        result.exit_code == 2
        and f"{api_maximum + 1} is not in the range 1<=x<={api_maximum}." in result.stderr
    )
    assert api.requests == []


# trigger ---------------------------------------------------------------------------------------------
TRIGGER = {
    "gateway": "demo",
    "env": "prod",
    "name": "reports-daily",
    "function": "prod/reports/daily",
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "payload": {"full": True},
    "paused": False,
    "next_tick": "2030-01-02T02:00:00+00:00",
}


def test_trigger_add_sends_the_schedule_and_payload(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on("POST", "gateways/demo/triggers", TRIGGER, status=201)
    result = cli(
        "trigger",
        "add",
        "prod/reports/daily",
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "--payload",
        '{"full": true}',
    )
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "function": "prod/reports/daily",
        "cron": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "payload": {"full": True},
    }
    assert (
        "added trigger prod/reports-daily runs prod/reports/daily at '0 3 * * *' (Europe/Berlin)"
        in result.output
    )
    assert "next tick 2030-01-02 02:00 UTC" in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("trigger", "add", "prod/reports/daily", "--cron", "* * * * *", "--payload", "{nope"),
            "--payload is not JSON",
        ),
        (("trigger", "add", "reports/daily", "--cron", "* * * * *"), "unknown environment 'reports'"),
        (("trigger", "runs", "reports-daily"), "expected ENV/NAME"),
        (("trigger", "pause", "prod/Bad Name"), "invalid trigger name"),
        (("trigger", "ls", "qa"), "give an environment"),
    ],
)
def test_trigger_commands_refuse_bad_input_before_asking_the_api(
    cli: Callable[..., Result], api: FakeApi, args: tuple[str, ...], says: str
) -> None:
    result = cli(*args)
    assert result.exit_code == 1 and says in result.output, result.output
    assert api.requests == []


def test_trigger_ls_and_runs_render_what_the_api_answers(cli: Callable[..., Result], api: FakeApi) -> None:
    api.on(
        "GET", "gateways/demo/triggers", {"triggers": [TRIGGER, {**TRIGGER, "name": "held", "paused": True}]}
    )
    listed = cli("trigger", "ls", "prod/reports/daily")
    assert listed.exit_code == 0, listed.output
    assert dict(api.sent()[-1].url.params) == {"env": "prod", "base": "reports/daily"}
    assert "prod/reports-daily" in listed.output and "2030-01-02 02:00 UTC" in listed.output
    assert "prod/held" in listed.output and "paused" in listed.output
    run = {
        "tick": "2030-01-02T02:00:00+00:00",
        "status": "failed",
        "http_status": 500,
        "duration_ms": 12.5,
        "version": 3,
        "request_id": "trigger-1",
        "skipped": 2,
        "lines": ["starting"],
        "error": "KeyError at index.py:4: 'day'\nTraceback ...",
    }
    api.on("GET", "gateways/demo/triggers/prod/reports-daily/runs", {"trigger": TRIGGER, "runs": [run]})
    shown = cli("trigger", "runs", "prod/reports-daily")
    assert shown.exit_code == 0, shown.output
    first, *rest = shown.output.splitlines()
    assert first.startswith(
        "2030-01-02 02:00 UTC  failed 500  12.5 ms  v3  trigger-1  (2 earlier ticks missed"
    )
    assert rest[:2] == ["  starting", "  KeyError at index.py:4: 'day'"]


def test_history_limit_and_the_api_agree_on_the_maximum() -> None:
    import typer.main

    from fnstage.api.app import create_app
    from fnstage.cli.main import app

    # typed as click.Command; the root is a group, and the option's range is its click type (IntRange)
    history = typer.main.get_command(app).commands["history"]  # type: ignore[attr-defined]
    cli_max = next(p for p in history.params if p.name == "limit").type.max
    document = create_app(None).openapi()  # type: ignore[arg-type]  # the document needs no services
    route = document["paths"]["/api/v1/gateways/{gateway}/history/{env}/{base}"]["get"]
    api_max = next(p for p in route["parameters"] if p["name"] == "limit")["schema"]["maximum"]
    assert cli_max == api_max == 200
