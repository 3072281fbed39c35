"""Docs that cannot drift: docs/cli.md is every command's --help, and every `fnstage ...` that
README.md shows is a command the CLI has, with options it takes."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from fnstage.cli import reference
from fnstage.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_cli_reference_is_what_the_help_says() -> None:
    assert reference.REFERENCE.read_text() == reference.reference(), (
        "docs/cli.md is stale: run scripts/cli-reference and commit it"
    )


def _fenced_lines(text: str) -> Iterator[tuple[str, str]]:
    """(the block's language, the line) of every line in a fenced code block."""
    language = None
    for line in text.splitlines():
        if line.startswith("```"):
            language = line[3:].strip() if language is None else None
        elif language is not None:
            yield language, line


def _code_block_commands(text: str) -> list[str]:
    """`fnstage ...` commands of the shell blocks: at a line's start, or after ` | `, ` && `, ` || `
    or ` ; ` (a trailing `# comment` dropped), as words shlex joins back."""
    found = []
    for language, line in _fenced_lines(text):
        if language in ("sh", "bash") and "fnstage " in line:
            for segment in re.split(r"\s(?:\|\||&&|\||;)\s", line):
                words = shlex.split(segment, comments=True)
                if words[:1] == ["fnstage"]:
                    found.append(shlex.join(words))
    return found


def _code_block_mentions(text: str) -> list[str]:
    """`fnstage COMMAND ...` named in the comments of any code block (shell, Python, YAML)."""
    found = []
    for _language, line in _fenced_lines(text):
        comment = re.search(r"(?:^|\s)#\s(.*)$", line)
        if comment:
            found += re.findall(r"\bfnstage(?: [a-z][a-z-]*| --[a-z][a-z-]*)+", comment.group(1))
    return found


def _inline_commands(text: str) -> list[str]:
    """`fnstage ...` written inline in backticks: a command and perhaps an option, no full example."""
    return re.findall(r"`(fnstage [^`]*)`", text)


def _resolve(words: list[str]) -> tuple[Any, list[str], list[str]]:
    """Walk `fnstage GROUP COMMAND` down the app: (the command, its path, the words after it)."""
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = words[1:]
    while rest and getattr(command, "commands", None) and not rest[0].startswith("-"):
        name = rest[0]
        assert name in command.commands, f"fnstage {' '.join(path)}: no command {name!r}"
        command, path, rest = command.commands[name], [*path, name], rest[1:]
    return command, path, rest


README_COMMANDS = _code_block_commands(README.read_text())


@pytest.mark.parametrize("line", README_COMMANDS)
def test_every_readme_example_parses(line: str) -> None:
    words = shlex.split(line, comments=True)
    command, path, rest = _resolve(words)
    assert not getattr(command, "commands", None), f"{line!r}: {' '.join(path)} is a group, not a command"
    command.make_context(" ".join(["fnstage", *path]), rest)  # raises on an unknown option or a bad value


@pytest.mark.parametrize(
    "line", sorted(set(_inline_commands(README.read_text()) + _code_block_mentions(README.read_text())))
)
def test_every_command_readme_names_exists(line: str) -> None:
    words = shlex.split(line)
    command, path, rest = _resolve(words)
    names = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    for option in (w for w in rest if w.startswith("--")):
        assert option.partition("=")[0] in names, f"{line!r}: fnstage {' '.join(path)} has no {option}"


def test_the_readme_shows_commands_at_all() -> None:
    assert len(README_COMMANDS) > 30  # the extraction works: the walk-through is full of them


def test_commands_anywhere_in_a_block_are_found() -> None:
    """After a pipe or `&&`, and named in a block's comments (Python's, YAML's), not only first."""
    text = (
        "```sh\n"
        'printf %s "$KEY" | fnstage secret set dev KEY --value-from-stdin\n'
        "cd x && fnstage push . dev/a   # then fnstage status a\n"
        "```\n"
        "```python\n"
        "from fnstage import Response   # kept: fnstage logs\n"
        "```\n"
    )
    assert _code_block_commands(text) == [
        "fnstage secret set dev KEY --value-from-stdin",
        "fnstage push . dev/a",
    ]
    assert _code_block_mentions(text) == ["fnstage status a", "fnstage logs"]
