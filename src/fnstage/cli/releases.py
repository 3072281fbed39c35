"""`fnstage promote|release|rollback`: code moves between environments, each move recorded."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fnstage.cli import config, render
from fnstage.cli.client import CliError, path_of
from fnstage.cli.command import command, connect, function_name
from fnstage.cli.options import (
    BakeOption,
    CanaryOption,
    Environment,
    ForceReleaseOption,
    GatewayOption,
    MaxErrorRateOption,
    MaxP95RatioOption,
    MinRequestsOption,
    NoteOption,
    SemverOption,
)
from fnstage.cli.waiting import WaitOption, WaitTimeoutOption, wait_until_live

release_commands = typer.Typer()


def _outcome(result: dict[str, Any]) -> str:
    """`prod/user/me: version 3, semver 1.0.2 (history #17)` from a release's answer."""
    function = result.get("function") or {}
    history = result.get("history") or {}
    line = f"{function.get('name')}: version {function.get('version')}, semver {function.get('semver')}"
    if history.get("id") is not None:
        line += f" (history #{history['id']})"
    return line


def _forced(force: bool) -> dict[str, Any]:
    return {"force": True} if force else {}


@command(release_commands)
def promote(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Source function, such as dev/user/me.")],
    to: Annotated[
        Environment | None,
        typer.Option("--to", help="Target environment. (default: the next one)"),
    ] = None,
    semver: SemverOption = None,
    note: NoteOption = None,
    canary: CanaryOption = None,
    bake: BakeOption = None,
    max_error_rate: MaxErrorRateOption = None,
    max_p95_ratio: MaxP95RatioOption = None,
    min_requests: MinRequestsOption = None,
    wait: WaitOption = False,
    wait_timeout: WaitTimeoutOption = 30.0,
    gateway: GatewayOption = None,
    force: ForceReleaseOption = False,
) -> None:
    """Copy a function's current code and its dependency lock to the next environment, as it is (no
    rebuild). A version that failed to load on its runtimes is refused unless --force.

    With --canary, the target serves it to that share of requests first, and the control plane
    promotes it at the end of --bake or rolls it back on a regression (see `fnstage rollout`).
    """
    fn = function_name(name)
    target = to.value if to else _next_environment(fn.env)
    gw = config.resolve_gateway(gateway)
    body: dict[str, Any] = {"name": str(fn), "target": target, "semver": semver, "note": note}
    _with_canary(body, canary, bake, max_error_rate, max_p95_ratio, min_requests)
    with connect() as api:
        result = api.post(path_of("gateways", gw, "promote"), body | _forced(force))
        if _said_canary(result):
            return
        render.say(f"promoted {fn} → {_outcome(result)}")
        if wait:
            wait_until_live(api, gw, result["function"], wait_timeout)


def _with_canary(
    body: dict[str, Any],
    canary: str | None,
    bake: str | None,
    max_error_rate: float | None,
    max_p95_ratio: float | None,
    min_requests: int | None,
) -> None:
    """Add the API's `canary` to a release's body, given --canary (checked here: a clear error early)."""
    from fnstage.cli.rollouts import canary_body

    spec = canary_body(canary, bake, max_error_rate, max_p95_ratio, min_requests)
    if spec is not None:
        body["canary"] = spec


def _said_canary(result: dict[str, Any]) -> bool:
    """A release that started a canary: say so (the environment's version has not changed yet)."""
    status = result.get("canary")
    if not status:
        return False
    from fnstage.cli.rollouts import describe

    for line in describe(status):
        render.say(line)
    name = status.get("name")
    render.say(
        f"watch it: fnstage rollout status {name}; decide by hand: fnstage rollout promote|abort {name}"
    )
    return True


def _next_environment(env: str) -> str:
    order = [e.value for e in Environment]
    if env == order[-1]:
        raise CliError(f"{env} is the last environment: there is nothing to promote it to")
    return order[order.index(env) + 1]


def _history_id(text: str) -> int | None:
    """`#42` or `42` -> 42; anything else (a semver, an environment) -> None."""
    digits = text[1:] if text.startswith("#") else text
    return int(digits) if digits.isdigit() else None


@command(release_commands)
def release(
    base: Annotated[
        str, typer.Argument(metavar="BASE", help="Function without environment, such as user/me.")
    ],
    source: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="ENV|ID",
            help="Release this environment's current code, or history entry ID (e.g. 42 or #42).",
        ),
    ],
    to: Annotated[Environment, typer.Option("--to", help="Target environment.")],
    semver: SemverOption = None,
    note: NoteOption = None,
    canary: CanaryOption = None,
    bake: BakeOption = None,
    max_error_rate: MaxErrorRateOption = None,
    max_p95_ratio: MaxP95RatioOption = None,
    min_requests: MinRequestsOption = None,
    wait: WaitOption = False,
    wait_timeout: WaitTimeoutOption = 30.0,
    gateway: GatewayOption = None,
    force: ForceReleaseOption = False,
) -> None:
    """Release code into an environment from another environment or from any history entry.

    The code is rebuilt with the dependencies recorded when it was deployed. Examples:

    \b
      fnstage release user/me --from staging --to prod --semver 1.0.0 --note "first release"
      fnstage release user/me --from 42 --to staging --semver 1.1.0-rc.2 --note "retry rc.1's code"
    """
    gw = config.resolve_gateway(gateway)
    body: dict[str, Any] = {"base": base, "target": to.value, "semver": semver, "note": note} | _forced(force)
    _with_canary(body, canary, bake, max_error_rate, max_p95_ratio, min_requests)
    with connect() as api:
        history_id = _history_id(source)
        if history_id is not None:
            entry = api.get(path_of("gateways", gw, "history-entries", str(history_id)))
            body.update(source_env=entry.get("env"), source_history_id=history_id)
        elif source in {e.value for e in Environment}:
            body.update(source_env=source, source_history_id=None)
        else:
            raise CliError(
                f"--from {source!r} is neither an environment (dev, staging, prod) "
                "nor a history id such as 42",
                field="from",
            )
        result = api.post(path_of("gateways", gw, "release"), body)
        if _said_canary(result):
            return
        render.say(f"released {source} → {_outcome(result)}")
        if wait:
            wait_until_live(api, gw, result["function"], wait_timeout)


@command(release_commands)
def rollback(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function to roll back, such as prod/user/me.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="SEMVER|#ID",
            help="The earlier release to bring back: its semver, or #ID of history.",
        ),
    ],
    semver: SemverOption = None,
    note: NoteOption = None,
    canary: CanaryOption = None,
    bake: BakeOption = None,
    max_error_rate: MaxErrorRateOption = None,
    max_p95_ratio: MaxP95RatioOption = None,
    min_requests: MinRequestsOption = None,
    wait: WaitOption = False,
    wait_timeout: WaitTimeoutOption = 30.0,
    gateway: GatewayOption = None,
) -> None:
    """Bring an earlier release's code back, as a new version with a greater semver.

    The code goes back, the version goes forward: if 1.0.1 is bad, release 1.0.0's code as 1.0.2.

    \b
      fnstage rollback prod/user/me --to 1.0.0 --semver 1.0.2 --note "1.0.1 breaks login"
    """
    fn = function_name(name)
    history_id = _history_id(to)
    body: dict[str, Any] = {
        "name": str(fn),
        "to_semver": None if history_id is not None else to,
        "to_history_id": history_id,
        "semver": semver,
        "note": note,
    }
    _with_canary(body, canary, bake, max_error_rate, max_p95_ratio, min_requests)
    with connect() as api:
        gw = config.resolve_gateway(gateway)
        result = api.post(path_of("gateways", gw, "rollback"), body)
        if _said_canary(result):
            return
        render.say(f"rolled back to {to}: {_outcome(result)}")
        if wait:
            wait_until_live(api, gw, result["function"], wait_timeout)
