"""The CLI starts fast: a command imports only what it uses (#17: `fnstage --help`, `status --json` and
an unchanged `push` in <= 100 ms).

Each check runs a fresh interpreter, since this test process has imported everything already; the
commands that talk to a server talk to a fake one on loopback, through the CLI's real HTTP client.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# Modules that cost tens of milliseconds each and that no command needs merely to start.
HEAVY = (
    "rich",
    "httpx",
    "sqlalchemy",
    "fastapi",
    "starlette",
    "pydantic",
    "granian",
    "fnstage.store",
    "fnstage.server",
    "fnstage.runtime",
    "fnstage.build",
    "packaging",
    "zoneinfo",
    "http.client",  # imports email and ssl: plain http:// goes through transport.PlainConnection
    "email",
    "ssl",
)


def _imported(code: str, *args: str, env: dict[str, str] | None = None) -> set[str]:
    """The names of the modules a fresh interpreter imported, per `-X importtime`."""
    command = ["-m", "fnstage", *args] if code == "fnstage" else ["-c", code, *args]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def _heavy_among(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY))


def test_building_every_command_imports_nothing_heavy() -> None:
    code = "import typer.main\nfrom fnstage.cli.main import app\nlist(typer.main.get_command(app).commands.values())"
    imported = _imported(code)
    assert "fnstage.cli.main" in imported  # the measurement works
    assert _heavy_among(imported) == []


def test_help_imports_only_rich_for_its_own_layout() -> None:
    code = "import sys\nfrom fnstage.cli.main import app\nsys.argv = ['fnstage', '--help']\napp()"
    imported = _imported(code)
    assert "rich" in imported  # typer renders help with rich: the one heavy module it needs
    assert [n for n in _heavy_among(imported) if not n.startswith("rich")] == []


@pytest.mark.parametrize(
    "words", [["--help"], ["status", "--help"], ["gateway", "create", "-h"]], ids=" ".join
)
def test_help_from_the_cache_imports_neither_typer_nor_rich(words: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "GITHUB_ACTIONS", "PY_COLORS")}
    imported = _imported("fnstage", *words, env={**env, "COLUMNS": "80"})
    assert "fnstage.cli.quick_help" in imported  # the measurement works
    assert sorted(n for n in imported if n.split(".")[0] in ("typer", "rich", "fnstage")) == [
        "fnstage",
        "fnstage.cli",
        "fnstage.cli.entry",
        "fnstage.cli.quick_help",
    ]


def test_json_output_needs_no_rich() -> None:
    code = (
        "import sys\nfrom fnstage.cli import render\n"
        "render.print_json({'a': 'é'})\n"
        "assert 'rich' not in sys.modules, 'rich imported'\n"
    )
    assert _heavy_among(_imported(code)) == []


INDEX = "def main(ctx):\n    return {'ok': True}\n"
FUNCTION = {
    "name": "dev/user/me",
    "version": 3,
    "entrypoint": "index.py",
    "file_hashes": {"index.py": hashlib.sha256(INDEX.encode()).hexdigest()},
}
OVERVIEW = {"base": "user/me", "environments": {"dev": FUNCTION, "staging": None, "prod": None}}


class FakeApi(BaseHTTPRequestHandler):
    """Just enough of the API for `status user/me` and an unchanged `push` of dev/user/me."""

    protocol_version = "HTTP/1.1"
    answers = {
        "/api/v1/gateways/demo/overview/user/me": OVERVIEW,
        "/api/v1/gateways/demo/functions/dev/user/me": FUNCTION,
    }

    def do_GET(self) -> None:
        body = json.dumps(self.answers.get(self.path, {"error": {"message": "no"}})).encode()
        self.send_response(200 if self.path in self.answers else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {
            **os.environ,
            "FNSTAGE_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "FNSTAGE_TOKEN": "fns_test",
            "FNSTAGE_GATEWAY": "demo",
            "FNSTAGE_CONFIG_DIR": str(tmp_path / "config"),
        }
    finally:
        server.shutdown()
        server.server_close()


def test_status_json_imports_nothing_heavy(cli_env: dict[str, str]) -> None:
    imported = _imported("fnstage", "status", "user/me", "--json", env=cli_env)
    assert "fnstage.cli.transport" in imported  # it did talk to the server
    assert _heavy_among(imported) == []


def test_unchanged_push_imports_nothing_heavy(cli_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "me"
    folder.mkdir()
    (folder / "index.py").write_text(INDEX)
    imported = _imported("fnstage", "push", str(folder), "dev/user/me", env=cli_env)
    assert "fnstage.cli.transport" in imported
    assert _heavy_among(imported) == []
