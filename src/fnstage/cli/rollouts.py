"""`fnstage rollout status|promote|abort NAME`: a canary release, watched and decided by hand.

A canary starts with `--canary 10%` (or steps, `--canary 10,50`) and `--bake 10m` on promote, release
or rollback; the control plane promotes it at the end of the bake or rolls it back on a regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from fnstage.cli import config, render
from fnstage.cli.client import CliError, path_of
from fnstage.cli.command import command, connect, function_name
from fnstage.cli.options import GatewayOption, JsonOption
from fnstage.domain.canary import parse_duration, parse_steps
from fnstage.domain.errors import FnstageError

rollout_app = typer.Typer(
    help="A canary release: see it (share, time left, both versions' counts), promote it or abort it.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Function, such as prod/user/me.")]


def canary_body(
    canary: str | None,
    bake: str | None,
    max_error_rate: float | None,
    max_p95_ratio: float | None,
    min_requests: int | None,
) -> dict[str, Any] | None:
    """The API's `canary` from the release commands' options; None without `--canary`."""
    if canary is None:
        if any(v is not None for v in (bake, max_error_rate, max_p95_ratio, min_requests)):
            raise CliError("--bake and the thresholds go with --canary, such as --canary 10% --bake 10m")
        return None
    try:
        body: dict[str, Any] = {"steps": list(parse_steps(canary))}
        if bake is not None:
            body["bake_s"] = parse_duration(bake)
    except FnstageError as error:
        raise CliError(error.message, field=error.field) from None
    if max_error_rate is not None:
        body["max_error_rate_increase"] = max_error_rate / 100
    if max_p95_ratio is not None:
        body["max_p95_ratio"] = max_p95_ratio
    if min_requests is not None:
        body["min_requests"] = min_requests
    return body


def describe(status: Mapping[str, Any]) -> list[str]:
    """A canary in a few lines: what, how far, both sides' counts, and the reason once decided."""
    stable, canary = status.get("stable") or {}, status.get("canary") or {}
    state = str(status.get("state"))
    head = f"{status.get('name')}: canary {canary.get('semver')} (version {canary.get('version')}) "
    if state == "running":
        steps = " -> ".join(f"{s}%" for s in status.get("steps") or [])
        head += (
            f"serves {status.get('share')}% of requests (steps {steps}), {status.get('time_left_s')} s left"
        )
    else:
        head += {
            "completed": "took all traffic",
            "rolled_back": "was rolled back",
            "aborted": "was aborted",
        }.get(state, state)
    lines = [head]
    for label, arm in (("canary", canary), ("stable", stable)):
        p95 = arm.get("p95_ms")
        lines.append(
            f"  {label} {arm.get('semver')} (v{arm.get('version')}): {arm.get('requests', 0)} requests, "
            f"{arm.get('errors', 0)} failed, p95 {'-' if p95 is None else f'{p95:g} ms'}"
        )
    if status.get("reason"):
        by = f"decided by {status['decided_by']}: " if status.get("decided_by") else ""
        lines.append(f"  {by}{status['reason']}")
    return lines


def _call(method: str, name: str, gateway: str | None, action: str | None, json_output: bool) -> None:
    fn = function_name(name)
    gw = config.resolve_gateway(gateway)
    parts = ["gateways", gw, "canary", fn.env, *fn.base.split("/")]
    if action is not None:
        parts.append(action)
    with connect() as api:
        result = api.get(path_of(*parts)) if method == "GET" else api.post(path_of(*parts), {})
    if json_output:
        render.print_json(result)
        return
    for line in describe(result):
        render.say(line)


@command(rollout_app, "status")
def rollout_status(
    name: NameArgument, gateway: GatewayOption = None, json_output: JsonOption = False
) -> None:
    """Show the function's running (or last) canary."""
    _call("GET", name, gateway, None, json_output)


@command(rollout_app, "promote")
def rollout_promote(
    name: NameArgument, gateway: GatewayOption = None, json_output: JsonOption = False
) -> None:
    """Give the running canary all traffic now (recorded in history)."""
    _call("POST", name, gateway, "promote", json_output)


@command(rollout_app, "abort")
def rollout_abort(name: NameArgument, gateway: GatewayOption = None, json_output: JsonOption = False) -> None:
    """Send all traffic back to the stable version now (recorded in history as a rollback)."""
    _call("POST", name, gateway, "abort", json_output)
