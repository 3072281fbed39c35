"""`fnstage gateway create|credentials|ls|show|set|rm`: gateways and their settings."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fnstage.cli import render
from fnstage.cli.client import CliError, path_of
from fnstage.cli.command import command, connect
from fnstage.cli.database_url import DatabaseUrlFileOption, database_url_of
from fnstage.cli.options import JsonOption

gateway_app = typer.Typer(
    help="Create, list and configure gateways (a gateway groups functions and their dependencies).",
    no_args_is_help=True,
)


@command(gateway_app, "create")
def gateway_create(
    gateway_id: Annotated[str, typer.Argument(metavar="ID", help="Lowercase letters, digits and '-'.")],
    allow_dev_to_prod: Annotated[
        bool, typer.Option(help="Let releases go from dev straight to prod, skipping staging.")
    ] = False,
) -> None:
    """Create a gateway: a group of functions served under ID.<env>.<domain>."""
    with connect() as api:
        gateway = api.post("gateways", {"id": gateway_id, "allow_dev_to_prod": allow_dev_to_prod})
    render.say(f"created gateway {gateway.get('id')}")


@command(gateway_app, "credentials")
def gateway_credentials(
    ctx: typer.Context,
    gateway_id: Annotated[str, typer.Argument(metavar="ID", help="The gateway its runtimes serve.")],
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="FNSTAGE_DATABASE_URL",
            metavar="URL",
            help="The control plane's PostgreSQL URL (the tables' owner): a server-side command.",
        ),
    ] = None,
    database_url_file: DatabaseUrlFileOption = None,
) -> None:
    """Create or rotate the database login of ID's runtimes and print its URL (PostgreSQL only).

    The login reads only ID's published functions and writes only its runtimes' status rows; use it
    with `fnstage runtime --gateway ID --database-url URL`. Running it again rotates the password.
    """
    from fnstage.store.credentials import runtime_credentials
    from fnstage.store.engine import is_postgres, make_engine

    database_url = database_url_of(ctx, database_url, database_url_file)
    if database_url is None:
        raise CliError("no database URL: set FNSTAGE_DATABASE_URL or pass --database-url-file FILE")
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        if not is_postgres(engine):
            raise CliError(
                "runtime credentials need PostgreSQL: SQLite has no roles (see docs/postgresql.md)"
            )
        url = runtime_credentials(engine, gateway_id)
    finally:
        engine.dispose()
    hint = render.console(stderr=True)
    hint.print(f"runtime login for gateway {gateway_id} (a new password if it existed); on stdout, for:")
    hint.print(f"  fnstage runtime --gateway {gateway_id} --database-url URL")
    typer.echo(url)


@command(gateway_app, "ls")
def gateway_ls(json_output: JsonOption = False) -> None:
    """List the gateways you can see."""
    with connect() as api:
        data = api.get("gateways")
    if json_output:
        render.print_json(data)
    elif not data.get("gateways"):
        render.say("no gateways yet: create one with `fnstage gateway create ID`")
    else:
        render.console().print(render.gateways_table(data["gateways"]))


@command(gateway_app, "show")
def gateway_show(
    gateway_id: Annotated[str, typer.Argument(metavar="ID")],
    json_output: JsonOption = False,
) -> None:
    """Show a gateway's settings and dependencies."""
    with connect() as api:
        gateway = api.get(path_of("gateways", gateway_id))
    if json_output:
        render.print_json(gateway)
    else:
        render.console().print(render.gateway_card(gateway))


@command(gateway_app, "set")
def gateway_set(
    gateway_id: Annotated[str, typer.Argument(metavar="ID")],
    allow_dev_to_prod: Annotated[
        bool | None,
        typer.Option(
            "--allow-dev-to-prod/--no-allow-dev-to-prod",
            help="Whether releases may go from dev straight to prod.",
            show_default=False,
        ),
    ] = None,
    history_limit: Annotated[
        int | None,
        typer.Option(
            "--history-limit", metavar="N", min=1, max=1000, help="History entries kept per function."
        ),
    ] = None,
) -> None:
    """Change a gateway's settings; only the options you pass are changed."""
    changes: dict[str, Any] = {}
    if allow_dev_to_prod is not None:
        changes["allow_dev_to_prod"] = allow_dev_to_prod
    if history_limit is not None:
        changes["history_limit"] = history_limit
    if not changes:
        raise CliError(
            "nothing to change: pass --allow-dev-to-prod/--no-allow-dev-to-prod or --history-limit N"
        )
    with connect() as api:
        gateway = api.patch(path_of("gateways", gateway_id), changes)
    render.console().print(render.gateway_card(gateway))


@command(gateway_app, "rm")
def gateway_rm(gateway_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Delete an empty gateway, its history and members (owners only; `fnstage rm` its functions first)."""
    with connect() as api:
        api.delete(path_of("gateways", gateway_id))
    render.say(f"deleted gateway {gateway_id}")
