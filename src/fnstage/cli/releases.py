"""`fnstage promote|release|rollback`: code moves between environments, each move recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from fnstage.cli import config, render
from fnstage.cli.client import ApiClient, CliError, path_of
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
    """Copy a function's current code and its dependency lock to the next environment, as it is.

    No rebuild. Without --to, it goes where the server's release policy names (the next environment).
    A version that failed to load on its runtimes is refused unless --force.

    With --canary, the target serves it to that share of requests first, and the control plane
    promotes it at the end of --bake or rolls it back on a regression (see `fnstage rollout`).
    """
    fn = function_name(name)
    gw = config.resolve_gateway(gateway)
    body: dict[str, Any] = {
        "name": str(fn),
        "target": to.value if to else None,
        "semver": semver,
        "note": note,
    }
    _with_canary(body, canary, bake, max_error_rate, max_p95_ratio, min_requests)
    with connect() as api:
        source = {"source_env": fn.env}
        if to is None:
            body["target"] = _default_target(release_options(api, gw, fn.base, source), str(fn))
        with _suggesting_semver(api, gw, fn.base, source, body["target"], semver):
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


def release_options(api: ApiClient, gateway: str, base: str, source: dict[str, Any]) -> dict[str, Any]:
    """The server's answer to "where may this code go": every environment, allowed or why not, and
    the semver it suggests. The release policy lives there; the CLI only shows it."""
    answer: dict[str, Any] = api.get(path_of("gateways", gateway, "release-options", base), **source)
    return answer


def _default_target(options: dict[str, Any], what: str) -> str:
    target = options.get("default_target")
    if isinstance(target, str):
        return target
    reasons = "; ".join(
        f"{t['env']}: {t['refusal']}" for t in options.get("targets") or [] if t.get("refusal")
    )
    raise CliError(f"nothing to promote {what} to ({reasons})", field="to")


@contextmanager
def _suggesting_semver(
    api: ApiClient, gateway: str, base: str, source: dict[str, Any], target: str, semver: str | None
) -> Iterator[None]:
    """A release refused for its semver gets the server's suggestion as a hint (asked only then)."""
    try:
        yield
    except CliError as error:
        if error.field != "semver" or error.hint:
            raise
        try:
            options = release_options(api, gateway, base, source)
        except CliError:
            raise error from None
        suggested = next((t["suggested_semver"] for t in options["targets"] if t["env"] == target), None)
        if suggested and suggested != semver:
            error.hint = f"the server suggests --semver {suggested} for {target}"
        raise error from None


def _show_options(options: dict[str, Any]) -> None:
    """Every environment as a target: allowed (with the suggested semver) or the reason it is not."""
    source = options.get("source") or {}
    where = f"#{source['history_id']}" if source.get("history_id") else source.get("env")
    render.say(f"{options.get('base')} from {where} ({source.get('semver') or 'no semver'}) can go to:")
    rows = [
        (
            t["env"] + (" (roll back)" if t.get("is_rollback") else ""),
            t.get("current_semver") or "-",
            t["refusal"] if t.get("refusal") else f"yes: --semver {t['suggested_semver']}",
        )
        for t in options.get("targets") or []
    ]
    render.console().print(render.plain_table(("TARGET", "NOW", "RELEASE"), rows))


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
    to: Annotated[
        Environment | None,
        typer.Option("--to", help="Target environment. (default: list where it may go, and stop)"),
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
    """Release code into an environment from another environment or from any history entry.

    The code is rebuilt with the dependencies recorded when it was deployed. Without --to, list
    where it may go (the server's release policy) and the semver it suggests.

    \b
    Examples:
      fnstage release user/me --from staging --to prod --semver 1.0.0 \\
          --note "first release"
      fnstage release user/me --from 42 --to staging --semver 1.1.0-rc.2 \\
          --note "retry rc.1's code"
    """
    gw = config.resolve_gateway(gateway)
    target = to.value if to else None
    body: dict[str, Any] = {"base": base, "target": target, "semver": semver, "note": note} | _forced(force)
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
        options_of = {"source_env": body["source_env"], "source_history_id": body["source_history_id"]}
        if target is None:
            _show_options(release_options(api, gw, base, options_of))
            return
        with _suggesting_semver(api, gw, base, options_of, target, semver):
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
    Example:
      fnstage rollback prod/user/me --to 1.0.0 --semver 1.0.2 \\
          --note "1.0.1 breaks login"
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
