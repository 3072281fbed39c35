"""The root group imports a command's module and builds the command only when it is used, and names
and orders them as Typer would; its table of name -> module stays true to what the modules register."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from typing import Any

import pytest
import typer
import typer.main
from typer.core import TyperGroup

import fnstage.cli
from fnstage.cli import main
from fnstage.cli.lazy import unwrap


def _eager() -> typer.Typer:
    """The root as Typer would build it from the table's modules, every command up front."""
    root = typer.Typer()
    spread: set[tuple[str, str]] = set()
    for name, source in main.COMMANDS.items():
        if source.group:
            root.add_typer(source.registry(), name=name, hidden=source.hidden)
        elif (source.module, source.attribute) not in spread:
            spread.add((source.module, source.attribute))
            root.add_typer(source.registry())
    return root


def _summary(command: Any, help_text: str | None) -> tuple[Any, ...]:
    return (
        command.name,
        help_text,
        command.hidden,
        [(p.name, p.opts, p.secondary_opts, p.required) for p in command.params],
        sorted(getattr(command, "commands", {}) or {}),
    )


def test_the_commands_are_the_ones_typer_would_build() -> None:
    lazy = typer.main.get_command(main.app).commands  # type: ignore[attr-defined]  # get_command is typed click.Command; the root is a Group
    eager = typer.main.get_command(_eager()).commands  # type: ignore[attr-defined]  # get_command is typed click.Command; the root is a Group
    assert list(lazy) == list(eager)  # same names, same order in --help
    assert "secrets" in lazy and lazy["secrets"].hidden
    for name in eager:
        # the lazy root unwraps its commands' help (`lazy.unwrap`); Typer keeps it as written
        assert _summary(lazy[name], lazy[name].help) == _summary(eager[name], unwrap(eager[name].help)), name


def test_running_one_command_builds_only_that_one(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    build_command, build_group = typer.main.get_command_from_info, typer.main.get_group_from_info

    def command(*args: Any, **options: Any) -> Any:  # typer passes the info by name, lazy.py by position
        built.append((args[0] if args else options["command_info"]).callback.__name__)
        return build_command(*args, **options)

    def group(*args: Any, **options: Any) -> Any:
        built.append((args[0] if args else options["group_info"]).name)
        return build_group(*args, **options)

    monkeypatch.setattr(typer.main, "get_command_from_info", command)
    monkeypatch.setattr(typer.main, "get_group_from_info", group)
    root = typer.main.get_command(main.app)
    built.clear()  # the root group itself
    commands = root.commands  # type: ignore[attr-defined]  # get_command is typed click.Command; the root is a Group
    assert len(commands) > 20 and built == []
    assert commands["status"].name == "status"
    assert commands.get("no-such-command") is None
    assert built == ["status"]
    assert commands["gateway"].name == "gateway"
    assert built[1:2] == ["gateway"]  # the group, then its own commands


def _module_typers() -> dict[int, str]:
    """id -> `module.name` of every module-level Typer in the CLI's modules."""
    found: dict[int, str] = {}
    for module in pkgutil.iter_modules(fnstage.cli.__path__):
        loaded = importlib.import_module(f"fnstage.cli.{module.name}")
        for attribute, value in vars(loaded).items():
            if isinstance(value, typer.Typer):
                found.setdefault(id(value), f"{loaded.__name__}.{attribute}")
    return found


def test_the_table_names_every_command_the_modules_register() -> None:
    typers = _module_typers()
    named = {f"{s.module}.{s.attribute}" for s in main.COMMANDS.values()}
    assert set(typers.values()) - named == {"fnstage.cli.main.app"}  # a new module is in the table
    for name, source in main.COMMANDS.items():
        if source.group:
            assert source.registry().registered_commands or source.registry().registered_groups, name
            continue
        registered = [
            info.name or typer.main.get_command_name(info.callback.__name__)
            for info in source.registry().registered_commands
            if info.callback is not None
        ]
        assert name in registered, f"{source.module}.{source.attribute} has no command {name}"
    for source in {s for s in main.COMMANDS.values() if not s.group}:  # and each spread Typer wholly
        for info in source.registry().registered_commands:
            assert info.callback is not None
            name = info.name or typer.main.get_command_name(info.callback.__name__)
            assert main.COMMANDS.get(name) == source, f"{source.module}.{source.attribute} registers {name}"


def test_running_a_command_imports_only_its_module() -> None:
    code = (
        "import sys\nfrom fnstage.cli.main import app\n"
        "import typer.main\ntyper.main.get_command(app).commands['status']\n"
        "print(' '.join(m for m in sys.modules if m.startswith('fnstage.cli.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    assert "fnstage.cli.functions" in loaded
    others = {"fnstage.cli." + n for n in ("access", "releases", "server", "gateways", "triggers", "logs")}
    assert loaded & others == set()


def test_help_paragraphs_are_unwrapped_for_rich_and_examples_keep_their_lines() -> None:
    """Typer keeps a docstring's line breaks after its first paragraph, so text wrapped at 100 columns
    in the source came out ragged at 80; an example (click's \\b) must keep its lines and lose the marker."""
    text = "First line\n    goes on.\n\n    A paragraph\n    wrapped in the source.\n\n    \b\n    Example:\n      a\n      b\n"
    assert unwrap(text) == "First line goes on.\n\nA paragraph wrapped in the source.\n\nExample:\n  a\n  b"
    assert unwrap(None) is None and unwrap("") == ""


def test_a_commands_help_wraps_at_the_terminal_not_where_the_source_did() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "fnstage", "push", "--help"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80", "TERM": "dumb"},
        check=True,
    ).stdout
    assert "virtual environments are skipped" in " ".join(line.strip() for line in shown.splitlines())
    assert " environments are \n" not in shown  # the source's line break, kept by Typer, gave this
    root = subprocess.run(
        [sys.executable, "-m", "fnstage", "--help"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80", "TERM": "dumb"},
        check=True,
    ).stdout
    example = root[root.index("A typical day:") : root.index("The server is")]
    assert '--note "first release"' in example and "\b" not in root
    assert all(line.startswith(("   ", "A typical")) for line in example.splitlines() if line.strip())


def _commands(command: Any) -> Any:
    yield command
    for sub in (getattr(command, "commands", None) or {}).values():
        yield from _commands(sub)


def test_every_example_in_help_fits_80_columns() -> None:
    """An example keeps its lines (click's \\b), so rich cannot wrap it: a line longer than the 78
    columns inside `--help`'s margins broke mid-word (`--note` on one line, its text on the next)."""
    root = typer.main.get_command(main.app)
    assert isinstance(root, TyperGroup)
    for command in [root, *(c for name in root.commands for c in _commands(root.commands[name]))]:
        for paragraph in (command.help or "").split("\n\n"):
            for line in paragraph.splitlines() if "\n" in paragraph else []:
                assert len(line) <= 78, f"{command.name}: {line!r}"  # inside a margin of 1 on each side
