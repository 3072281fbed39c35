"""The CLI reference (docs/cli.md) and the help texts `--help` prints without rendering them
(quick_help.py), written from every command's own `--help` so they cannot drift.

    python -m fnstage.cli.reference          # rewrite docs/cli.md and help/ (scripts/cli-reference)
    python -m fnstage.cli.reference --check  # exit 1 when either is stale

tests/test_cli_reference.py and tests/test_cli_help_cache.py fail when the committed files differ
from what this writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

from fnstage.cli import quick_help
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


# How typer prints help to a pipe, and to a colour terminal (FORCE_COLOR stands for the terminal: the
# styles typer uses are the 8 standard colours, bold and dim, the same bytes in every colour system).
VARIANTS = {"plain": {}, "color": {"FORCE_COLOR": "1"}}


def _live_help(path: tuple[str, ...], program: str) -> str:
    """`PROGRAM PATH... --help` as typer prints it in this process's environment."""
    result = CliRunner().invoke(app, [*path, "--help"], prog_name=program)
    if result.exit_code != 0:
        raise RuntimeError(f"{program} {' '.join(path)} --help failed: {result.output}")
    return result.stdout


def _render_help() -> dict[str, dict[str, str]]:
    """help file name -> program name -> text, rendered here (`--render-help`, in the environment
    `help_texts` gives a fresh interpreter)."""
    texts = {}
    for path in commands(typer.main.get_command(app)):
        name = os.path.basename(quick_help.help_file(path))
        texts[name] = {program: _live_help(path, program) for program in quick_help.PROGRAMS}
    return texts


def _rendering_environment(kind: str) -> dict[str, str]:
    """This environment at the cache's width, without what changes rich's or typer's choices."""
    unset = {*quick_help.RENDERING_VARIABLES, "NO_COLOR", "COLORTERM", "LINES"}
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    return {**environ, "COLUMNS": str(quick_help.WIDTH), "TERM": "xterm", **VARIANTS[kind]}


def help_texts() -> dict[str, str]:
    """help file name -> its JSON: for each variant, the part after `Usage:` (`body`, the same for
    every program name) and the part before it (`usage`, per program name)."""
    rendered: dict[str, dict[str, dict[str, str]]] = {}
    for kind in VARIANTS:
        # A fresh interpreter per variant: typer reads FORCE_COLOR once, when its rich layout is imported.
        result = subprocess.run(
            [sys.executable, "-m", "fnstage.cli.reference", "--render-help"],
            env=_rendering_environment(kind),
            capture_output=True,
            text=True,
            check=True,
        )
        for name, texts in json.loads(result.stdout).items():
            rendered.setdefault(name, {})[kind] = texts
    files = {}
    for name, kinds in rendered.items():
        usage: dict[str, dict[str, str]] = {program: {} for program in quick_help.PROGRAMS}
        body: dict[str, str] = {}
        for kind, texts in kinds.items():
            head, body[kind] = _split_common_tail(texts)
            for program, text in head.items():
                usage[program][kind] = text
        files[name] = json.dumps({"usage": usage, "body": body}, indent=1, ensure_ascii=False) + "\n"
    return files


def _split_common_tail(texts: dict[str, str]) -> tuple[dict[str, str], str]:
    """Each text's own beginning, and the ending they all share (whole lines)."""
    split = [text.splitlines(keepends=True) for text in texts.values()]
    shared = 0
    while all(len(lines) > shared for lines in split) and len({lines[-1 - shared] for lines in split}) == 1:
        shared += 1
    tail = "".join(split[0][len(split[0]) - shared :])
    return {
        program: "".join(lines[: len(lines) - shared]) for program, lines in zip(texts, split, strict=True)
    }, tail


def write_help_texts(files: dict[str, str]) -> None:
    os.makedirs(quick_help.HELP_DIR, exist_ok=True)
    for stale in set(os.listdir(quick_help.HELP_DIR)) - set(files):
        os.remove(os.path.join(quick_help.HELP_DIR, stale))
    for name, text in files.items():
        with open(os.path.join(quick_help.HELP_DIR, name), "w", encoding="utf-8") as file:
            file.write(text)


def stale_help_texts(files: dict[str, str]) -> list[str]:
    """The help files that differ from `files`, are missing, or are left over."""
    present = set(os.listdir(quick_help.HELP_DIR)) if os.path.isdir(quick_help.HELP_DIR) else set()
    stale = sorted(present ^ set(files))
    for name in sorted(present & set(files)):
        with open(os.path.join(quick_help.HELP_DIR, name), encoding="utf-8") as file:
            if file.read() != files[name]:
                stale.append(name)
    return stale


def main(argv: list[str]) -> int:
    if "--render-help" in argv:
        json.dump(_render_help(), sys.stdout)
        return 0
    text = reference()
    files = help_texts()
    if "--check" in argv:
        stale = []
        if not REFERENCE.exists() or REFERENCE.read_text() != text:
            stale.append(str(REFERENCE))
        stale += [os.path.join(quick_help.HELP_DIR, name) for name in stale_help_texts(files)]
        if stale:
            print(f"stale: {', '.join(stale)}: run scripts/cli-reference and commit", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text)
    write_help_texts(files)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
