"""`--wait`: return only when every runtime serving the gateway has the new version live.

Polls the API's rollout of that version; says "live on 2/2 runtimes in 7 ms", or fails with the load
error of a runtime that refused it (that runtime keeps serving the previous version).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from fnstage.cli import render
from fnstage.cli.client import ApiClient, CliError, path_of

WaitOption = Annotated[
    bool, typer.Option("--wait", help="Return once every runtime serving the gateway has it live.")
]
WaitTimeoutOption = Annotated[
    float, typer.Option("--wait-timeout", metavar="SECONDS", min=0.1, help="How long --wait waits.")
]
POLL_S = 0.02


def wait_until_live(api: ApiClient, gateway: str, function: dict[str, Any], timeout_s: float) -> None:
    name, version = str(function["name"]), int(function["version"])
    env, base = name.split("/", 1)
    path = path_of("gateways", gateway, "rollout", env, base)
    deadline = time.monotonic() + timeout_s
    said_installing = False
    while True:
        rollout = api.get(path, version=version)
        if not said_installing and "installing dependencies" in str(rollout.get("summary") or ""):
            render.say(f"{name}: installing dependencies on the runtimes ...", style="dim")
            said_installing = True
        if rollout.get("failed"):
            failed = [r for r in rollout.get("runtimes", []) if r.get("state") == "failed"]
            raise CliError(
                f"{name} version {version} failed to load on {len(failed)} of {rollout.get('active')} "
                f"runtimes: {failed[0].get('error') if failed else 'unknown error'}",
                hint="the runtimes keep serving the previous version; fix and push again, or roll back",
            )
        if rollout.get("done"):
            latency = rollout.get("latency_ms")
            took = f" in {latency:.0f} ms" if isinstance(latency, int | float) else ""
            silent = f" ({rollout['silent']} silent)" if rollout.get("silent") else ""
            render.say(f"live on {rollout['live']}/{rollout['active']} runtimes{took}{silent}")
            return
        if rollout.get("active", 0) == 0 and not rollout.get("runtimes"):
            raise CliError(
                f"no runtime is serving gateway {gateway}: nothing can make {name} live",
                hint="start one with `fnstage up` or `fnstage runtime --gateway " + gateway + "`",
            )
        if time.monotonic() >= deadline:
            summary = rollout.get("summary")
            raise CliError(
                f"{name} version {version} is not live everywhere after {timeout_s:g} s: {summary}"
            )
        time.sleep(POLL_S)
