"""`fnstage trigger add|ls|rm|pause|resume|runs`: run a function on a cron schedule.

A trigger is named `ENV/NAME` (such as `prod/reports-daily`): it belongs to one environment and is
not copied by promotion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fnstage.cli import config, render
from fnstage.cli.client import CliError, path_of
from fnstage.cli.command import command, connect, function_name
from fnstage.cli.options import GatewayOption, JsonOption
from fnstage.domain.errors import FnstageError
from fnstage.domain.names import ENVIRONMENTS

if TYPE_CHECKING:  # rich is imported when something is printed, not at start-up
    from rich.text import Text

trigger_app = typer.Typer(
    help="Run a function on a cron schedule: add, list, pause, resume, remove, and see its runs.",
    no_args_is_help=True,
)

TriggerArgument = Annotated[
    str, typer.Argument(metavar="ENV/NAME", help="The trigger, such as prod/reports-daily (see trigger ls).")
]
STATUS_STYLES = {"ok": "green", "failed": "red", "lost": "red", "missed": "yellow", "running": "cyan"}


def _trigger_path(gateway: str, ref: str, *rest: str) -> str:
    env, _, name = ref.partition("/")
    if env not in ENVIRONMENTS or not name:
        raise CliError(f"invalid trigger {ref!r}: expected ENV/NAME such as prod/reports-daily")
    try:
        from fnstage.domain.schedules import check_trigger_name  # zoneinfo: only when used

        check_trigger_name(name)
    except FnstageError as error:
        raise CliError(error.message) from None
    return path_of("gateways", gateway, "triggers", env, name, *rest)


def _describe(trigger: Mapping[str, Any]) -> str:
    when = "paused" if trigger.get("paused") else f"next tick {_time(trigger.get('next_tick'))}"
    schedule = f"'{trigger['cron']}' ({trigger['timezone']})"
    return f"{trigger['env']}/{trigger['name']} runs {trigger['function']} at {schedule}, {when}"


def _time(value: Any) -> str:
    moment = render.parse_time(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


@command(trigger_app, "add")
def trigger_add(
    function: Annotated[
        str, typer.Argument(metavar="FUNCTION", help="What it runs, such as prod/reports/daily.")
    ],
    cron: Annotated[
        str,
        typer.Option(
            "--cron",
            metavar="EXPR",
            help="Five cron fields: minute hour day month weekday ('0 3 * * *'), or @hourly.",
        ),
    ],
    timezone: Annotated[
        str, typer.Option("--tz", metavar="ZONE", help="Read the schedule in this IANA time zone.")
    ] = "UTC",
    payload: Annotated[
        str | None, typer.Option("--payload", metavar="JSON", help="JSON the function receives as ctx.json.")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", metavar="NAME", help="Name it (default: the function's path, dashed)."),
    ] = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run FUNCTION on a schedule. In staging and prod this needs the releaser role."""
    fn = function_name(function, field="function")
    body: dict[str, Any] = {"function": str(fn), "cron": cron, "timezone": timezone}
    if name is not None:
        body["name"] = name
    if payload is not None:
        try:
            body["payload"] = json.loads(payload)
        except ValueError as error:
            raise CliError(f"--payload is not JSON: {error}") from None
    gw = config.resolve_gateway(gateway)
    with connect() as api:
        added = api.post(path_of("gateways", gw, "triggers"), body)
    if json_output:
        render.print_json(added)
        return
    render.say(f"added trigger {_describe(added)}")


@command(trigger_app, "ls")
def trigger_ls(
    what: Annotated[
        str | None,
        typer.Argument(metavar="[ENV | FUNCTION]", help="Only this environment's (prod) or function's."),
    ] = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the gateway's triggers, with their schedules and next ticks."""
    from rich.table import Table
    from rich.text import Text

    params: dict[str, str] = {}
    if what:
        if "/" in what:
            fn = function_name(what, field="function")
            params = {"env": fn.env, "base": fn.base}
        elif what in ENVIRONMENTS:
            params = {"env": what}
        else:
            raise CliError(
                f"invalid filter {what!r}: give an environment ({', '.join(ENVIRONMENTS)}) or ENV/PATH"
            )
    gw = config.resolve_gateway(gateway)
    with connect() as api:
        data = api.get(path_of("gateways", gw, "triggers"), **params)
    if json_output:
        render.print_json(data)
        return
    triggers = data.get("triggers") or []
    if not triggers:
        render.say("no triggers" + (f" for {what}" if what else f" in gateway {gw}"))
        return
    table = Table("TRIGGER", "FUNCTION", "SCHEDULE", "TIME ZONE", "NEXT TICK", box=None, pad_edge=False)
    for t in triggers:
        next_tick = Text("paused", style="yellow") if t.get("paused") else Text(_time(t.get("next_tick")))
        table.add_row(f"{t['env']}/{t['name']}", t["function"], t["cron"], t["timezone"], next_tick)
    render.console().print(table)


@command(trigger_app, "rm")
def trigger_rm(
    trigger: TriggerArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    gateway: GatewayOption = None,
) -> None:
    """Remove a trigger and the record of its runs."""
    gw = config.resolve_gateway(gateway)
    path = _trigger_path(gw, trigger)
    if not yes:
        typer.confirm(f"Remove trigger {trigger} of gateway {gw}, and its runs?", abort=True)
    with connect() as api:
        api.delete(path)
    render.say(f"removed trigger {trigger}")


@command(trigger_app, "pause")
def trigger_pause(trigger: TriggerArgument, gateway: GatewayOption = None) -> None:
    """Stop a trigger firing until it is resumed."""
    gw = config.resolve_gateway(gateway)
    with connect() as api:
        paused = api.post(_trigger_path(gw, trigger, "pause"), {})
    render.say(f"paused {_describe(paused)}")


@command(trigger_app, "resume")
def trigger_resume(trigger: TriggerArgument, gateway: GatewayOption = None) -> None:
    """Fire again from the next tick on (ticks that passed while paused are not caught up)."""
    gw = config.resolve_gateway(gateway)
    with connect() as api:
        resumed = api.post(_trigger_path(gw, trigger, "resume"), {})
    render.say(f"resumed {_describe(resumed)}")


@command(trigger_app, "runs")
def trigger_runs(
    trigger: TriggerArgument,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many runs to show, newest first.")] = 20,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a trigger's runs: tick, status, duration, version, what the function logged, its error."""
    gw = config.resolve_gateway(gateway)
    with connect() as api:
        data = api.get(_trigger_path(gw, trigger, "runs"), limit=limit)
    if json_output:
        render.print_json(data)
        return
    runs = data.get("runs") or []
    if not runs:
        render.say(f"{trigger} has not run yet; {_describe(data['trigger'])}")
        return
    out = render.console()
    for line in runs_view(runs):
        out.print(line, soft_wrap=True)


def runs_view(runs: Sequence[Mapping[str, Any]]) -> list[Text]:
    """One line per run (tick, status, duration, version, request id), then its log lines and error."""
    from rich.text import Text

    out: list[Text] = []
    for run in runs:
        status = str(run.get("status"))
        header = Text.assemble(_time(run.get("tick")), "  ", (status, STATUS_STYLES.get(status, "")))
        if run.get("http_status") is not None:
            header.append(f" {run['http_status']}")
        if isinstance(run.get("duration_ms"), int | float) and status not in ("missed", "running"):
            header.append(f"  {round(run['duration_ms'], 1):g} ms", style="dim")
        if run.get("version") is not None:
            header.append(f"  v{run['version']}", style="dim")
        header.append(f"  {run.get('request_id')}", style="dim")
        if run.get("skipped"):
            header.append(f"  ({run['skipped']} earlier ticks missed while nothing ran)", style="yellow")
        out.append(header)
        out += [Text("  " + str(line)) for line in run.get("lines") or []]
        for line in str(run.get("error") or "").splitlines():
            out.append(Text("  " + line, style="red"))
    return out
