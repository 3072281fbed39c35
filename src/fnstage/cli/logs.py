"""`fnstage logs`: a function's invocations and what it logged, once or followed."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fnstage.cli import config, log_filters, render
from fnstage.cli.client import CliError, path_of
from fnstage.cli.command import command, connect, function_name
from fnstage.cli.options import GatewayOption, JsonOption

log_commands = typer.Typer()


@command(log_commands)
def logs(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function, such as dev/user/me.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many invocations to show.")] = 50,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep showing new invocations as they happen (Ctrl-C stops)."),
    ] = False,
    version: Annotated[int | None, typer.Option("--version", min=1, help="Only this version's.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="An HTTP status (500) or ok, error (5xx), 2xx, 3xx, 4xx.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Started after: 30s, 10m, 2h, 1d ago, or a time (UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Started before: as --since.")] = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the function's invocations and the lines it logged with ctx.log (kept across restarts)."""
    fn = function_name(name)
    gw = config.resolve_gateway(gateway)
    filters: dict[str, Any] = {
        "version": version,
        "status": log_filters.status(status) if status is not None else None,
        "since": log_filters.moment("--since", since) if since is not None else None,
        "until": log_filters.moment("--until", until) if until is not None else None,
    }
    log_filters.check_window(since, filters["since"], until, filters["until"])
    path = path_of("gateways", gw, "logs", fn.env, fn.base)
    with connect() as api:
        try:
            data = api.get(path, limit=limit, **filters)
        except CliError as error:
            # A missing route answers the framework's bare "Not Found"; a missing function names itself.
            if error.status == 404 and error.message in ("Not Found", f"HTTP 404 from {api.url}: Not Found"):
                raise CliError(
                    f"this fnstage server does not offer invocation logs yet (no logs endpoint at {api.url})"
                ) from None
            raise
        invocations = data.get("invocations") or []
        if follow:
            _follow_logs(
                api, path, filters, list(reversed(invocations)), int(data.get("cursor") or 0), json_output
            )
            return
    if json_output:
        render.print_json(data)
        return
    if not invocations:
        given = {"--version": version, "--status": status, "--since": since, "--until": until}
        chosen = " ".join(f"{flag} {value}" for flag, value in given.items() if value is not None)
        render.say(f"no invocations of {fn} " + (f"match {chosen}" if chosen else "recorded yet"))
        return
    out = render.console()
    out.print(render.logs_header(), soft_wrap=True)
    for line in render.logs_view(invocations):
        out.print(line, soft_wrap=True)


FOLLOW_INTERVAL_S = 0.25


def _follow_logs(
    api: Any, path: str, filters: dict[str, Any], shown: list[dict[str, Any]], cursor: int, json_lines: bool
) -> None:
    """Print `shown` (oldest first), then every invocation the durable log gains, until Ctrl-C. With
    --json, one JSON object a line."""
    import json
    import sys
    import time

    out = render.console()

    def show(entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            if json_lines:
                sys.stdout.write(json.dumps(entry) + "\n")
            else:
                for line in render.logs_view([entry]):
                    out.print(line, soft_wrap=True)
        sys.stdout.flush()

    if not json_lines:
        out.print(render.logs_header(), soft_wrap=True)
    show(shown)
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL_S)
            data = api.get(path, limit=1000, after=cursor, **filters)
            show(data.get("invocations") or [])
            cursor = max(cursor, int(data.get("cursor") or 0))
    except KeyboardInterrupt:  # Ctrl-C is how one stops following: an end, not an error
        return
