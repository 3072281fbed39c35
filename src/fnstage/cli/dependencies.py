"""`fnstage deps set|add|rm|clear|show`: the Python packages a gateway's functions may import.

The server resolves and installs them (uv); the CLI only edits the list of requirements.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fnstage.cli import config, render
from fnstage.cli.client import CliError, path_of
from fnstage.cli.command import command, connect
from fnstage.cli.options import GatewayOption, JsonOption

deps_app = typer.Typer(
    help="Pin the Python packages a gateway's functions may import (NAME==VERSION).",
    no_args_is_help=True,
)


def _dependencies_path(gateway: str | None) -> str:
    return path_of("gateways", config.resolve_gateway(gateway), "dependencies")


def _put_dependencies(gateway: str | None, requirements: list[str]) -> None:
    """Resolve and install on the server (uv), with a spinner meanwhile; then show the lock."""
    spinner = render.console().status("resolving and installing dependencies ...", spinner="dots")
    with connect() as api, spinner:
        result = api.put(_dependencies_path(gateway), {"dependencies": requirements})
    requirements = result.get("dependencies") or []
    render.say(
        f"{result.get('id', 'gateway')} dependencies: {', '.join(requirements) if requirements else 'none'}"
    )
    lock = result.get("lock")
    if lock:
        render.say(render.lock_summary(lock), style="dim")


def _requirement_name(text: str) -> str:
    from fnstage.domain.dependencies import parse_any_requirement
    from fnstage.domain.errors import InvalidInput

    try:
        return parse_any_requirement(text)[0]
    except InvalidInput as error:
        raise CliError(f"{error.message} (field: dependencies)") from None


@command(deps_app, "set")
def deps_set(
    requirements: Annotated[
        list[str],
        typer.Argument(metavar="REQ...", help="Requirements such as requests==2.32.3 or 'pydantic>=2,<3'."),
    ],
    gateway: GatewayOption = None,
) -> None:
    """Replace the gateway's dependencies with exactly these requirements.

    uv resolves them into a lock (exact versions and hashes) and installs it before this answers; a
    requirement that cannot be resolved is refused and nothing changes. Every save records the lock
    it was built with, so a history entry, a promotion or a rollback runs with the same packages.
    """
    _put_dependencies(gateway, requirements)


@command(deps_app, "add")
def deps_add(
    requirements: Annotated[
        list[str],
        typer.Argument(metavar="REQ...", help="Requirements to add or replace, such as humanize==4.9.0."),
    ],
    gateway: GatewayOption = None,
) -> None:
    """Add requirements (or replace the one of the same package), keeping the others."""
    added = {_requirement_name(r): r for r in requirements}
    with connect() as api:
        current = api.get(_dependencies_path(gateway)).get("dependencies") or []
    kept = [r for r in current if _requirement_name(r) not in added]
    _put_dependencies(gateway, kept + list(added.values()))


@command(deps_app, "rm")
def deps_rm(
    names: Annotated[
        list[str], typer.Argument(metavar="NAME...", help="Packages to remove, such as humanize.")
    ],
    gateway: GatewayOption = None,
) -> None:
    """Remove packages from the gateway's requirements."""
    removed = {_requirement_name(n) for n in names}
    with connect() as api:
        current = api.get(_dependencies_path(gateway)).get("dependencies") or []
    missing = removed - {_requirement_name(r) for r in current}
    if missing:
        raise CliError(f"not a dependency of this gateway: {', '.join(sorted(missing))}")
    _put_dependencies(gateway, [r for r in current if _requirement_name(r) not in removed])


@command(deps_app, "clear")
def deps_clear(gateway: GatewayOption = None) -> None:
    """Remove every dependency of the gateway."""
    _put_dependencies(gateway, [])


@command(deps_app, "show")
def deps_show(
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
    lock: Annotated[bool, typer.Option("--lock", help="Print the lock itself (uv's, with hashes).")] = False,
) -> None:
    """Show the gateway's requirements, one per line, and the versions its lock resolved them to."""
    with connect() as api:
        data = api.get(_dependencies_path(gateway))
    if json_output:
        render.print_json(data)
        return
    if lock:
        render.console().print(
            (data.get("lock") or {}).get("text") or "", end="", markup=False, highlight=False
        )
        return
    requirements = data.get("dependencies") or []
    if not requirements:
        render.say("no dependencies: add some with `fnstage deps add requests==2.32.3`")
    for requirement in requirements:
        render.say(requirement)
    if data.get("lock"):
        render.say(render.lock_summary(data["lock"]), style="dim")
