"""`fnstage up` and `fnstage runtime`: the commands that run fnstage itself, not talk to it.

Their heavy imports (the server, the runtime, the store) happen inside them, when they run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from fnstage.cli.client import CliError
from fnstage.cli.command import command
from fnstage.cli.database_url import (
    DatabaseUrlFileOption,
    DatabaseUrlOption,
    SecretKeyFileOption,
    database_url_of,
)
from fnstage.cli.options import LogFormatOption

server_commands = typer.Typer()


@command(server_commands)
def up(
    ctx: typer.Context,
    data: Annotated[
        Path, typer.Option("--data", metavar="DIR", help="Folder for the SQLite store and logs.")
    ] = Path(".fnstage"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API and the web console.")] = 8470,
    runtime_port: Annotated[int, typer.Option(help="Port of the runtime that serves the functions.")] = 8471,
    database_url: DatabaseUrlOption = None,
    database_url_file: DatabaseUrlFileOption = None,
    secret_key_file: SecretKeyFileOption = None,
    with_runtime: Annotated[
        bool,
        typer.Option(
            "--runtime/--no-runtime",
            help="Run a runtime for every gateway beside the API; --no-runtime when runtimes run "
            "elsewhere (`fnstage runtime --gateway GW` on the same database).",
        ),
    ] = True,
    catch_up: Annotated[
        int,
        typer.Option(
            "--catch-up",
            envvar="FNSTAGE_TRIGGER_CATCH_UP_S",
            min=0,
            max=7 * 86400,
            metavar="SECONDS",
            help="A trigger's tick missed while no `fnstage up` ran runs once at start if at most this old.",
        ),
    ] = 900,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            metavar="PORT",
            help="Serve the API's metrics for Prometheus at http://METRICS_HOST:PORT/metrics. (default: off)",
            show_default=False,
        ),
    ] = None,
    runtime_metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            metavar="PORT",
            help="Count the runtime's requests, loads and restarts and serve them at "
            "http://METRICS_HOST:PORT/metrics. (default: off, nothing counted)",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address of the metrics ports: anyone who reaches it reads them (no token).")
    ] = "127.0.0.1",
    log_format: LogFormatOption = "text",
) -> None:
    """Run fnstage on this machine: API, console and runtime on an embedded SQLite store.

    The first start creates an admin user and writes the CLI's credentials file, so every other
    command works at once from this machine. Stop with Ctrl+C.
    """
    try:
        from fnstage.server import serve_up
    except ModuleNotFoundError as error:
        if error.name != "fnstage.server":
            raise
        raise CliError("this installation of fnstage has no server (fnstage.server is missing)") from None
    from fnstage.ports import PortInUse

    database_url = database_url_of(ctx, database_url, database_url_file)
    if log_format not in ("text", "json"):
        raise CliError(f"--log-format: {log_format!r} is not a format; use text or json")
    if with_runtime:
        _check_cell_settings()  # before the runtime child would die of it, again and again
    try:
        serve_up(
            data_dir=data,
            host=host,
            port=port,
            runtime_port=runtime_port,
            database_url=database_url,
            with_runtime=with_runtime,
            catch_up=timedelta(seconds=catch_up),
            secret_key_file=secret_key_file,
            metrics_port=metrics_port,
            runtime_metrics_port=runtime_metrics_port,
            metrics_host=metrics_host,
            log_format=log_format,
        )
    except PortInUse as error:
        raise CliError(str(error)) from None


@command(server_commands)
def runtime(
    ctx: typer.Context,
    database_url: DatabaseUrlOption = None,
    database_url_file: DatabaseUrlFileOption = None,
    secret_key_file: SecretKeyFileOption = None,
    data: Annotated[
        Path, typer.Option("--data", metavar="DIR", help="Folder of the embedded SQLite store.")
    ] = Path(".fnstage"),
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway", "-g", metavar="ID", help="Serve only this gateway. (default: every gateway)"
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            metavar="ENV",
            help="Serve only this environment of --gateway (production, behind a proxy): its cell "
            "serves --port itself and forwards to one cell per dependency lock. (default: every "
            "environment, behind a front on --port)",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Ignored: every cell is a process.")] = 1,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8471,
    domain: Annotated[
        str, typer.Option(help="Functions answer at GATEWAY.ENV.DOMAIN (and /ENV/PATH when bound).")
    ] = "localhost",
    public_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="Where the control plane reaches this runtime (for logs).", show_default=False
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(metavar="LEVEL", help="debug, info, warning or error.")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="FNSTAGE_METRICS_PORT",
            min=1,
            max=65535,
            metavar="PORT",
            help="Count requests, loads and restarts, and serve them for Prometheus at "
            "http://METRICS_HOST:PORT/metrics. (default: metrics off, nothing counted)",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            envvar="FNSTAGE_METRICS_HOST",
            help="Address of --metrics-port: anyone who reaches it reads the metrics (no token).",
        ),
    ] = "127.0.0.1",
    log_format: LogFormatOption = "text",
) -> None:
    """Serve published functions and hot-reload every change, with no restart.

    Production runs one per gateway (`--gateway`), as many as you like, on the shared database;
    `fnstage up` runs one for every gateway beside the API.
    """
    from fnstage.runtime.server import run_runtime
    from fnstage.store.engine import sqlite_url

    database_url = database_url_of(ctx, database_url, database_url_file)
    url = database_url or sqlite_url(data)
    if not database_url and not (data / "fnstage.db").exists():
        raise CliError(
            f"no fnstage store in {data}: pass --database-url, or --data with a folder `fnstage up` made"
        )
    if env is not None and gateway is None:
        raise CliError("--env needs --gateway: a cell serves one environment of one gateway")
    if log_format not in ("text", "json"):
        raise CliError(f"--log-format: {log_format!r} is not a format; use text or json")
    if env is not None and env not in ("dev", "staging", "prod"):
        raise CliError(f"--env: {env!r} is not an environment; use dev, staging or prod")
    if metrics_port is not None:
        from fnstage.runtime.supervisor import port_is_free

        if metrics_port == port:
            raise CliError(
                f"--metrics-port: {metrics_port} is --port already; give metrics a port of their own"
            )
        if not port_is_free(metrics_host, metrics_port):
            raise CliError(f"--metrics-port: {metrics_host}:{metrics_port} is in use; choose another port")
    _check_cell_settings()
    from fnstage.secretbox import KeyRing, SecretKeyError

    try:
        keyring = KeyRing.from_env(secret_key_file)
    except SecretKeyError as error:
        raise CliError(str(error)) from None
    run_runtime(
        url,
        host,
        port,
        workers,
        gateway,
        domain,
        public_url,
        log_level,
        env=env,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
        keyring=keyring,
    )


def _check_cell_settings() -> None:
    """`FNSTAGE_CELL_INTERFACE` and TMPDIR (where cells' sockets go), checked before anything starts
    (`runtime.server.cell_interface`, `runtime.supervisor.check_temp_dir`)."""
    from fnstage.runtime.server import cell_interface
    from fnstage.runtime.supervisor import check_temp_dir

    try:
        cell_interface()
        check_temp_dir()
    except ValueError as error:
        raise CliError(str(error)) from None
