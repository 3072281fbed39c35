"""A root group that builds a command's click object only when something asks for that command.

Typer builds every command up front (63 here, about 30 ms of CPU: each one's string annotations are
evaluated twice), though a run uses one. `LazyGroup.source` holds the registrations instead, and its
`commands` mapping builds each on first use: `status` builds one command, `--help` still builds all
of them for their one-line help. Names and order are the ones Typer would give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from functools import partial
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperGroup


class _Commands(MutableMapping[str, Any]):
    """Command name -> click command, built from its registration the first time it is looked up."""

    def __init__(self, sources: dict[str, Callable[[], Any]]) -> None:
        self._sources = sources
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            self._built[name] = self._sources[name]()  # KeyError for an unknown name, as a dict
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._sources[name] = lambda: command
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._sources[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


def _sources(source: typer.Typer) -> dict[str, Callable[[], Any]]:
    """How to build each command `source` registers, by name, in Typer's order (its `add_typer`s:
    named groups as one command, unnamed ones spread into their commands)."""
    short, markup = source.pretty_exceptions_short, source.rich_markup_mode
    sources: dict[str, Callable[[], Any]] = {}
    for group in source.registered_groups:
        if group.name:
            sources[group.name] = partial(
                typer.main.get_group_from_info,
                group,
                pretty_exceptions_short=short,
                rich_markup_mode=markup,
                suggest_commands=source.suggest_commands,
            )
            continue
        assert group.typer_instance is not None, "add_typer always gives one"
        for info in group.typer_instance.registered_commands:
            assert info.callback is not None, "a command always has a callback"
            name = info.name or typer.main.get_command_name(info.callback.__name__)
            sources[name] = partial(
                typer.main.get_command_from_info, info, pretty_exceptions_short=short, rich_markup_mode=markup
            )
    return sources


class LazyGroup(TyperGroup):
    """A group whose subcommands come from `source` (set by a subclass), built when first used."""

    source: ClassVar[typer.Typer]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _Commands(_sources(self.source))

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: TyperGroup's own would build every command
