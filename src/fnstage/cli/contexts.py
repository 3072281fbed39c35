"""`fnstage context ls|use`: which fnstage instance the CLI talks to, one context per instance URL.

Kept apart from the other commands so the command group stands alone.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from fnstage import contexts
from fnstage.cli import config, render
from fnstage.cli.client import CliError

if TYPE_CHECKING:  # rich is imported when something is printed, not at start-up
    pass

context_app = typer.Typer(
    help="The fnstage instances this machine has credentials for (one per URL), and which one the CLI uses.",
    no_args_is_help=True,
)


@context_app.command("ls")
def context_ls(json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the contexts (URL and user; tokens are never shown); * marks the one in use."""
    from rich.table import Table

    settings = config.resolve()
    try:
        stored = config.read_contexts(settings.credentials_path)
    except CliError as error:
        render.print_error(error)
        raise typer.Exit(1) from None
    if json_output:
        render.print_json(
            {
                "current": stored.current,
                "in_use": settings.url,
                "file": str(settings.credentials_path),
                "contexts": [{"url": c.url, "user": c.user} for c in stored.entries.values()],
            }
        )
        return
    if not stored.entries:
        render.say(f"no contexts in {settings.credentials_path}: `fnstage up` adds one")
        return
    table = Table(box=None, header_style="bold")
    for column in ("", "URL", "USER"):
        table.add_column(column)
    for url, context in sorted(stored.entries.items()):
        table.add_row("*" if url == settings.url else "", url, context.user or "")
    render.console().print(table)
    if os.environ.get("FNSTAGE_URL"):
        render.say(f"FNSTAGE_URL is set: the CLI uses {settings.url}")


@context_app.command("use")
def context_use(
    url: Annotated[str, typer.Argument(metavar="URL", help="An instance's URL, as `context ls` shows it.")],
) -> None:
    """Make the CLI talk to the instance at URL (its stored token goes with it)."""
    path = config.credentials_path()
    try:
        contexts.use(path, url)
    except KeyError:
        known = ", ".join(sorted(config.read_contexts(path).entries)) or "none"
        render.print_error(
            CliError(
                f"no context for {contexts.normalize_url(url)} in {path} (known: {known})",
                hint="`fnstage up` adds its own; `fnstage context ls` lists them",
            )
        )
        raise typer.Exit(1) from None
    except contexts.CredentialsFileError as error:
        render.print_error(CliError(str(error)))
        raise typer.Exit(1) from None
    render.say(f"the CLI now uses {contexts.normalize_url(url)}")
