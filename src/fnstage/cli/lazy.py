"""A root group that imports a command's module and builds its click object only when it is used.

Typer builds every command up front (63 here, about 30 ms of CPU: each one's string annotations are
evaluated twice), and importing every command module costs about 16 ms more, though a run uses one
command. `LazyGroup.table` names, for each command, the module and the Typer that register it; its
`commands` mapping imports and builds each on first use: `status` imports functions.py and builds one
command, the root's live `--help` still builds all of them for their one-line help. Names and order
are the table's, which tests/test_cli_lazy.py keeps equal to what Typer would build from the modules.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperGroup


@dataclass(frozen=True)
class Source:
    """Where a root command is registered: `module.attribute` is the group itself (`gateway`) when
    `group`, else a Typer whose commands are spread into the root (`status` in function_commands)."""

    module: str
    attribute: str
    group: bool = False
    hidden: bool = False

    def registry(self) -> typer.Typer:
        found = getattr(importlib.import_module(self.module), self.attribute)
        assert isinstance(found, typer.Typer), f"{self.module}.{self.attribute} is not a Typer"
        return found


def unwrap(help_text: str | None) -> str | None:
    """Each paragraph of a docstring on one line, for rich to wrap at the terminal's width. Typer keeps
    a docstring's own line breaks after its first paragraph, so a paragraph wrapped at 100 columns in
    the source came out ragged at 80 ("... virtual environments are" / "skipped)."). A paragraph that
    starts with click's \\b keeps its lines (an example), without the marker, which rich would print."""
    if not help_text:
        return help_text
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(
        p.lstrip("\b").lstrip("\n")
        if p.startswith("\b")
        else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def unwrap_all(command: Any) -> Any:
    """`command`, its help unwrapped (`unwrap`), and its subcommands' if it is a group."""
    command.help = unwrap(command.help)
    for sub in (getattr(command, "commands", None) or {}).values():
        unwrap_all(sub)
    return command


def _build(name: str, source: Source, settings: typer.Typer) -> Any:
    """The click command or group `name`, built as Typer builds the root's commands, its help unwrapped."""
    short, markup = settings.pretty_exceptions_short, settings.rich_markup_mode
    registry = source.registry()
    if source.group:
        holder = typer.Typer()
        holder.add_typer(registry, name=name, hidden=source.hidden)  # as the eager root did
        return unwrap_all(
            typer.main.get_group_from_info(
                holder.registered_groups[-1],
                pretty_exceptions_short=short,
                rich_markup_mode=markup,
                suggest_commands=settings.suggest_commands,
            )
        )
    for info in registry.registered_commands:
        assert info.callback is not None, "a command always has a callback"
        if (info.name or typer.main.get_command_name(info.callback.__name__)) == name:
            return unwrap_all(
                typer.main.get_command_from_info(info, pretty_exceptions_short=short, rich_markup_mode=markup)
            )
    raise LookupError(f"{source.module}.{source.attribute} registers no command {name}")


class _Commands(MutableMapping[str, Any]):
    """Command name -> click command, built from its source the first time it is looked up."""

    def __init__(self, table: dict[str, Source], settings: typer.Typer) -> None:
        self._names = list(table)
        self._table = table
        self._settings = settings
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            source = self._table[name]  # KeyError for an unknown name, as a dict
            self._built[name] = _build(name, source, self._settings)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(name)
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class LazyGroup(TyperGroup):
    """A group whose subcommands come from `table` (set by a subclass), imported and built when used."""

    table: ClassVar[dict[str, Source]]
    settings: ClassVar[typer.Typer] = typer.Typer()  # pretty_exceptions_short, rich_markup_mode, ...

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.help = unwrap(self.help)
        self.commands = _Commands(self.table, self.settings)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: TyperGroup's own would build every command
