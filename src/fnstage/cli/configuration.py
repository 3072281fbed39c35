"""`fnstage config set|unset|ls|history|rollback` and `fnstage secret set|rm|ls|rotate-key`.

Configuration belongs to an environment (promotion never copies it); `--function user/me` narrows a
key to one function. A secret's value is read from stdin (`--value-from-stdin`) or a hidden prompt,
never from the command line (argv is public to every local user).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

import typer

from fnstage.cli import config, render
from fnstage.cli.client import CliError, path_of
from fnstage.cli.command import command, connect
from fnstage.cli.options import GatewayOption, JsonOption
from fnstage.domain.names import ENVIRONMENTS

if TYPE_CHECKING:  # rich is imported when something is printed, not at start-up
    pass

config_app = typer.Typer(
    help="An environment's configuration (ctx.config): set, unset, list, history, rollback.",
    no_args_is_help=True,
)
secret_app = typer.Typer(
    help="An environment's secrets (ctx.secrets): set, remove, list (names only), rotate the key.",
    no_args_is_help=True,
)

EnvArgument = Annotated[str, typer.Argument(metavar="ENV", help="dev, staging or prod.")]
FunctionOption = Annotated[
    str | None,
    typer.Option(
        "--function",
        "-f",
        metavar="PATH",
        help="Only for this function (user/me): overrides the environment's.",
    ),
]
NoteOption = Annotated[
    str | None, typer.Option("--note", "-m", metavar="TEXT", help="Why: recorded in the history.")
]


def _env(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise CliError(f"invalid environment {env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return env


def _config_path(gateway: str | None, env: str, *rest: str) -> str:
    return path_of("gateways", config.resolve_gateway(gateway), "config", _env(env), *rest)


def _summary(view: Mapping[str, Any]) -> str:
    return f"{view['env']} is at configuration version {view['version']}"


@command(config_app, "set")
def config_set(
    env: EnvArgument,
    pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", help="Plain settings (not secrets).")],
    function: FunctionOption = None,
    note: NoteOption = None,
    json_values: Annotated[
        bool, typer.Option("--json-values", help="Read each VALUE as JSON (numbers, lists, objects).")
    ] = False,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Set plain settings of ENV (a new configuration version, live without restart). In staging
    and prod this needs the releaser role. Secrets go through `fnstage secret set`."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"expected KEY=VALUE, got {pair!r}")
        if json_values:
            try:
                values[key] = json.loads(value)
            except ValueError as error:
                raise CliError(f"{key}: the value is not JSON ({error})") from None
        else:
            values[key] = value
    with connect() as api:
        view = api.patch(_config_path(gateway, env), {"set": values, "function": function, "note": note})
    if json_output:
        render.print_json(view)
        return
    render.say(f"set {', '.join(values)}: {_summary(view)}")


@command(config_app, "unset")
def config_unset(
    env: EnvArgument,
    keys: Annotated[list[str], typer.Argument(metavar="KEY...")],
    function: FunctionOption = None,
    note: NoteOption = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Remove plain settings of ENV."""
    with connect() as api:
        view = api.patch(_config_path(gateway, env), {"unset": keys, "function": function, "note": note})
    if json_output:
        render.print_json(view)
        return
    render.say(f"unset {', '.join(keys)}: {_summary(view)}")


@command(config_app, "ls")
def config_ls(env: EnvArgument, gateway: GatewayOption = None, json_output: JsonOption = False) -> None:
    """List ENV's settings and secrets (secrets by name, who set them and when; never their values)."""
    with connect() as api:
        view = api.get(_config_path(gateway, env))
    if json_output:
        render.print_json(view)
        return
    _print_view(view)


def _print_view(view: Mapping[str, Any]) -> None:
    from rich.table import Table

    render.say(f"{_summary(view)}" + (f", by {view['updated_by']}" if view.get("updated_by") else ""))
    table = Table("KIND", "KEY", "FUNCTION", "VALUE", box=None, pad_edge=False)
    for item in view.get("config") or []:
        value = json.dumps(item["value"]) if "value" in item else "(hidden: viewer)"
        table.add_row("config", item["key"], item.get("function") or "*", value)
    for item in view.get("secrets") or []:
        who = f"set by {item.get('set_by')} {render.relative_time(item.get('set_at'))}"
        table.add_row(
            "secret", item["key"], item.get("function") or "*", f"•••• {item.get('fingerprint')} ({who})"
        )
    if view.get("config") or view.get("secrets"):
        render.console().print(table)
    else:
        render.say("no settings or secrets")


@command(config_app, "history")
def config_history(
    env: EnvArgument,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=200)] = 20,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """ENV's configuration versions, newest first: who, when, the note, which keys changed."""
    from rich.table import Table

    with connect() as api:
        data = api.get(_config_path(gateway, env, "history"), limit=limit)
    if json_output:
        render.print_json(data)
        return
    table = Table("VERSION", "KIND", "WHO", "WHEN", "CHANGES", "NOTE", box=None, pad_edge=False)
    for v in data.get("versions") or []:
        changes = ", ".join(
            f"{'+' if c['op'] == 'set' else '-'}{c['type']} {c['key']}"
            + (f" ({c['function']})" if c.get("function") else "")
            for c in v.get("changes") or []
        )
        table.add_row(
            str(v["version"]),
            v["kind"],
            v["actor"],
            render.relative_time(v["created_at"]),
            changes,
            v.get("note") or "",
        )
    render.console().print(table)


@command(config_app, "rollback")
def config_rollback(
    env: EnvArgument,
    to: Annotated[
        int, typer.Option("--to", min=1, metavar="N", help="The configuration version to restore.")
    ],
    note: NoteOption = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Restore ENV's configuration version N (as a new version), live without restart."""
    with connect() as api:
        done = api.post(_config_path(gateway, env, "rollback"), {"to": to, "note": note})
    if json_output:
        render.print_json(done)
        return
    render.say(f"{env} configuration restored from version {to} as version {done['version']}")


# secrets -------------------------------------------------------------------------------------------
@command(secret_app, "set")
def secret_set(
    env: EnvArgument,
    key: Annotated[str, typer.Argument(metavar="KEY")],
    value_from_stdin: Annotated[
        bool,
        typer.Option(
            "--value-from-stdin", help="Read the value from standard input (one trailing newline dropped)."
        ),
    ] = False,
    function: FunctionOption = None,
    note: NoteOption = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Set the secret KEY of ENV, read from stdin or a hidden prompt (never from the command line).
    Its value is encrypted at rest and never shown again: only who set it, when and a fingerprint."""
    if value_from_stdin:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    elif sys.stdin.isatty():
        value = typer.prompt(f"Value of {key} in {env}", hide_input=True, confirmation_prompt=True)
    else:
        raise CliError("no terminal to prompt on: pipe the value with --value-from-stdin")
    if not value:
        raise CliError("the value is empty: a secret needs a value (remove one with `fnstage secret rm`)")
    path = path_of("gateways", config.resolve_gateway(gateway), "secrets", _env(env), key)
    with connect() as api:
        view = api.put(path, {"value": value, "function": function, "note": note})
    if json_output:
        render.print_json(view)
        return
    mine: Mapping[str, Any] = next((s for s in view.get("secrets") or [] if s["key"] == key), {})
    render.say(f"secret {key} set in {env} (fingerprint {mine.get('fingerprint')}): {_summary(view)}")


@command(secret_app, "rm")
def secret_rm(
    env: EnvArgument,
    key: Annotated[str, typer.Argument(metavar="KEY")],
    function: FunctionOption = None,
    note: NoteOption = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Remove the secret KEY of ENV."""
    query = {k: v for k, v in (("function", function), ("note", note)) if v}
    path = path_of("gateways", config.resolve_gateway(gateway), "secrets", _env(env), key)
    with connect() as api:
        view = api.delete(path + (f"?{urlencode(query)}" if query else ""))
    if json_output:
        render.print_json(view)
        return
    render.say(f"secret {key} removed from {env}: {_summary(view)}")


@command(secret_app, "ls")
def secret_ls(env: EnvArgument, gateway: GatewayOption = None, json_output: JsonOption = False) -> None:
    """List ENV's secrets: names, who set them, when, fingerprints. Never values."""
    with connect() as api:
        view = api.get(_config_path(gateway, env))
    if json_output:
        render.print_json({"env": view["env"], "version": view["version"], "secrets": view["secrets"]})
        return
    _print_view({**view, "config": []})


@command(secret_app, "rotate-key")
def secret_rotate_key(gateway: GatewayOption = None, json_output: JsonOption = False) -> None:
    """Re-encrypt every secret of the gateway (all versions) under a new data key, wrapped with the
    server's newest key. Owners only."""
    gw = config.resolve_gateway(gateway)
    with connect() as api:
        done = api.post(path_of("gateways", gw, "secrets", "rotate-key"), {})
    if json_output:
        render.print_json(done)
        return
    render.say(f"gateway {gw}: {done['rotated']} stored secret value(s) re-encrypted under a new key")
