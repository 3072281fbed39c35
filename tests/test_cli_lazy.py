"""The root group builds a command only when it is used, and names and orders them as Typer would."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from fnstage.cli import main


def _summary(command: Any) -> tuple[Any, ...]:
    return (
        command.name,
        command.help,
        command.hidden,
        [(p.name, p.opts, p.secondary_opts, p.required) for p in command.params],
        sorted(getattr(command, "commands", {}) or {}),
    )


def test_the_commands_are_the_ones_typer_would_build() -> None:
    lazy = typer.main.get_command(main.app).commands  # type: ignore[attr-defined]  # get_command is typed click.Command; the root is a Group
    eager = typer.main.get_command(main.commands).commands  # type: ignore[attr-defined]  # get_command is typed click.Command; the root is a Group
    assert list(lazy) == list(eager)  # same names, same order in --help
    assert "secrets" in lazy and lazy["secrets"].hidden
    for name in eager:
        assert _summary(lazy[name]) == _summary(eager[name]), name


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
