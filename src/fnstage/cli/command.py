"""What every command shares: its error handling, its API client and its function names.

A command is registered with `@command(group)`; every `CliError` it raises is printed as one red line
on stderr with exit code 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from fnstage.cli import config, render
from fnstage.cli.client import ApiClient, CliError, path_of
from fnstage.domain.errors import FnstageError
from fnstage.domain.names import FunctionName

F = TypeVar("F", bound=Callable[..., Any])


def command(group: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Register a command whose `CliError`s are printed as one red line and exit with status 1."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except CliError as error:
                render.print_error(error)
                raise typer.Exit(1) from None

        group.command(name)(run)
        return func

    return decorate


def connect() -> ApiClient:
    settings = config.resolve()
    return ApiClient(settings.url, settings.token, url_from=settings.url_from)


def function_name(text: str, field: str = "name") -> FunctionName:
    try:
        return FunctionName.parse(text, field=field)
    except FnstageError as error:
        raise CliError(error.message) from None


def function_path(gateway: str, name: FunctionName) -> str:
    return path_of("gateways", gateway, "functions", name.env, name.base)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
