"""The CLI reference (docs/cli.md), written from every command's own `--help` so it cannot drift.

    python -m fnstage.cli.reference          # rewrite docs/cli.md (scripts/cli-reference)
    python -m fnstage.cli.reference --check  # exit 1 when docs/cli.md is stale

tests/test_cli_reference.py fails when the committed file differs from what this writes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

from fnstage.cli.main import app

WIDTH = "100"
REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "cli.md"
HEADER = """\
# The `fnstage` command

Every command's `--help`, as the CLI prints it at 100 columns. Written by `scripts/cli-reference`
(`python -m fnstage.cli.reference`) from the code: do not edit by hand; a test fails when it is stale.
"""


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every visible command and group, depth first in the order `--help` lists them. (Typer's
    commands are its own copy of click's classes, so groups are told by their `commands`.)"""
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        if not sub.hidden:
            yield from commands(sub, (*path, name))


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": WIDTH, "NO_COLOR": "1", "TERM": "dumb"}
    )
    if result.exit_code != 0:
        raise RuntimeError(f"fnstage {' '.join(path)} --help failed: {result.output}")
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines).rstrip() + "\n"


def reference() -> str:
    sections = [HEADER]
    for path in commands(typer.main.get_command(app)):
        title = " ".join(("fnstage", *path))
        sections.append(f"## `{title}`\n\n```text\n{help_text(path)}```\n")
    return "\n".join(sections)


def main(argv: list[str]) -> int:
    text = reference()
    if "--check" in argv:
        if not REFERENCE.exists() or REFERENCE.read_text() != text:
            print(f"{REFERENCE} is stale: run scripts/cli-reference and commit it", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
