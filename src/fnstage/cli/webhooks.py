"""`fnstage webhook add|ls|rm|deliveries`: tell another system (a team's chat) about every deployment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from fnstage.cli import config, render
from fnstage.cli.client import path_of
from fnstage.cli.command import command, connect
from fnstage.cli.options import GatewayOption, JsonOption

if TYPE_CHECKING:  # rich is imported when something is printed, not at start-up
    pass

webhook_app = typer.Typer(
    help="POST every save, release and rollback of a gateway to a URL (Slack-compatible, signed).",
    no_args_is_help=True,
)

IdArgument = Annotated[int, typer.Argument(metavar="ID", min=1, help="The webhook's id (see webhook ls).")]
STATUS_STYLES = {"delivered": "green", "failed": "red", "pending": "yellow"}


@command(webhook_app, "add")
def webhook_add(
    url: Annotated[
        str, typer.Argument(metavar="URL", help="Where to POST, such as a Slack incoming webhook.")
    ],
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            "-e",
            help="Only this event (repeat it): create, save, promote, release, rollback, rename, delete.",
        ),
    ] = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add a receiver of the gateway's deployments. Its signing secret is shown this once."""
    gw = config.resolve_gateway(gateway)
    body: dict[str, Any] = {"url": url}
    if events:
        body["events"] = events
    with connect() as api:
        added = api.post(path_of("gateways", gw, "webhooks"), body)
    if json_output:
        render.print_json(added)
        return
    render.say(f"added webhook {added['id']}: {added['url']} ({_events(added)})")
    render.say(f"secret (shown this once): {added['secret']}")
    render.say(
        f"each POST carries {added['signature_header']}: sha256=HMAC-SHA256(secret, body) in hex; "
        "compare it with hmac.compare_digest"
    )


@command(webhook_app, "ls")
def webhook_ls(gateway: GatewayOption = None, json_output: JsonOption = False) -> None:
    """List the gateway's webhooks."""
    from rich.table import Table

    gw = config.resolve_gateway(gateway)
    with connect() as api:
        data = api.get(path_of("gateways", gw, "webhooks"))
    if json_output:
        render.print_json(data)
        return
    hooks = data.get("webhooks") or []
    if not hooks:
        render.say(f"no webhooks on gateway {gw}: add one with `fnstage webhook add URL`")
        return
    table = Table("id", "url", "events", "added by")
    for hook in hooks:
        table.add_row(str(hook["id"]), hook["url"], _events(hook), hook["created_by"])
    render.console().print(table)


@command(webhook_app, "rm")
def webhook_rm(webhook_id: IdArgument, gateway: GatewayOption = None) -> None:
    """Remove a webhook; its queued deliveries go with it."""
    gw = config.resolve_gateway(gateway)
    with connect() as api:
        removed = api.delete(path_of("gateways", gw, "webhooks", str(webhook_id)))["removed"]
    render.say(f"removed webhook {removed['id']} ({removed['url']})")


@command(webhook_app, "deliveries")
def webhook_deliveries(
    webhook_id: IdArgument,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many to show.")] = 20,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """A webhook's deliveries, newest first: delivered, pending (with its next attempt) or failed."""
    from rich.table import Table

    gw = config.resolve_gateway(gateway)
    with connect() as api:
        data = api.get(path_of("gateways", gw, "webhooks", str(webhook_id), "deliveries"), limit=limit)
    if json_output:
        render.print_json(data)
        return
    deliveries = data.get("deliveries") or []
    if not deliveries:
        render.say(f"no deliveries for webhook {webhook_id} yet")
        return
    table = Table("id", "event", "status", "attempts", "last answer", "what")
    for d in deliveries:
        style = STATUS_STYLES.get(d["status"], "")
        status = f"[{style}]{d['status']}[/]" if style else d["status"]
        if d["status"] == "pending" and d.get("next_attempt_at"):
            status += f" (next {d['next_attempt_at'][11:19]})"
        answer = d.get("last_error") or (f"HTTP {d['last_status']}" if d.get("last_status") else "")
        table.add_row(
            str(d["id"]), d["event"], status, str(d["attempts"]), answer, d["payload"].get("text", "")
        )
    render.console().print(table)


def _events(hook: dict[str, Any]) -> str:
    events = hook.get("events")
    return "every event" if events in (None, "all", []) else ", ".join(events)
