"""The CLI starts fast: a command imports only what it uses (#17: `fnstage --help` in <= 100 ms).

Each check runs a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import subprocess
import sys

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
)


def _imported(code: str, *args: str) -> set[str]:
    """The top-level names of the modules a fresh interpreter imported, per `-X importtime`."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
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
    imported = _imported("import typer.main\nfrom fnstage.cli.main import app\ntyper.main.get_command(app)")
    assert "fnstage.cli.main" in imported  # the measurement works
    assert _heavy_among(imported) == []


def test_help_imports_only_rich_for_its_own_layout() -> None:
    code = "import sys\nfrom fnstage.cli.main import app\nsys.argv = ['fnstage', '--help']\napp()"
    imported = _imported(code)
    assert "rich" in imported  # typer renders help with rich: the one heavy module it needs
    assert [n for n in _heavy_among(imported) if not n.startswith("rich")] == []


def test_json_output_needs_no_rich() -> None:
    code = (
        "import sys\nfrom fnstage.cli import render\n"
        "render.print_json({'a': 'é'})\n"
        "assert 'rich' not in sys.modules, 'rich imported'\n"
    )
    assert _heavy_among(_imported(code)) == []
