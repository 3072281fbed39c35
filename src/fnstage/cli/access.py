"""`fnstage whoami|token|user|member|audit`: who may act, and the record of who changed access."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fnstage.cli import config, render
from fnstage.cli.client import CliError, path_of
from fnstage.cli.command import command, connect
from fnstage.cli.options import GatewayOption, JsonOption

if TYPE_CHECKING:  # rich is imported when something is printed, not at start-up
    pass

ROLES = ("viewer", "developer", "releaser", "owner")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d{1,9})([smhdw])")

token_app = typer.Typer(help="Your API tokens: create (shown once), list, revoke.", no_args_is_help=True)
user_app = typer.Typer(
    help="Users (admin only): create one and hand over its first token.", no_args_is_help=True
)
member_app = typer.Typer(
    help="Who may act on a gateway: viewer < developer < releaser < owner.", no_args_is_help=True
)

access_commands = typer.Typer()


@command(access_commands)
def whoami(json_output: JsonOption = False) -> None:
    """Show who the configured token belongs to, and on which server."""
    with connect() as api:
        me = api.get("me")
        if json_output:
            render.print_json(me)
            return
        role = "admin" if me.get("is_admin") else "user"
        render.say(f"{me.get('name')} ({role}) at {api.url}")


def parse_duration(text: str) -> int:
    """`30d`, `12h`, `90m`, `2w` or `45s` as seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise CliError(f"invalid duration {text!r}: use a number and a unit s, m, h, d or w, such as 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _when(value: Any) -> str:
    return render.relative_time(value) if value else "-"


# tokens ---------------------------------------------------------------------------------------------
@command(token_app, "create")
def token_create(
    name: Annotated[str, typer.Option("--name", "-n", metavar="NAME", help="What the token is for.")] = "cli",
    expires_in: Annotated[
        str | None,
        typer.Option("--expires-in", metavar="DURATION", help="e.g. 30d, 12h; default: until revoked."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a token for yourself. Its secret is shown now and never again."""
    body: dict[str, Any] = {"name": name}
    if expires_in is not None:
        body["expires_in_seconds"] = parse_duration(expires_in)
    with connect() as api:
        token = api.post("tokens", body)
    if json_output:
        render.print_json(token)
        return
    until = f"expires {token['expires_at']}" if token.get("expires_at") else "valid until revoked"
    render.say(f"created token {token['id']} ({token['name']}, {until}); it is shown only once:")
    typer.echo(token["secret"])


@command(token_app, "ls")
def token_ls(json_output: JsonOption = False) -> None:
    """List your tokens (never their secrets)."""
    with connect() as api:
        data = api.get("tokens")
    if json_output:
        render.print_json(data)
        return
    rows = [
        (
            t["id"],
            t["name"],
            _when(t["created_at"]),
            _when(t["last_used_at"]) if t.get("last_used_at") else "never",
            t.get("expires_at") or "never",
            _state(t),
        )
        for t in data["tokens"]
    ]
    render.console().print(
        render.plain_table(("ID", "NAME", "CREATED", "LAST USED", "EXPIRES", "STATE"), rows)
    )


def _state(token: Mapping[str, Any]) -> str:
    if token.get("revoked_at"):
        return "revoked"
    expires = render.parse_time(token.get("expires_at"))
    if expires is not None and expires <= datetime.now(UTC):
        return "expired"
    return "active"


@command(token_app, "revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(metavar="ID", min=1)]) -> None:
    """Revoke a token: it is refused from the next request on."""
    with connect() as api:
        api.delete(path_of("tokens", str(token_id)))
    render.say(f"revoked token {token_id}")


# users ----------------------------------------------------------------------------------------------
@command(user_app, "create")
def user_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Lowercase letters, digits, '.', '_', '-'.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Create a user and print their first token (hand it over: it is shown only once)."""
    with connect() as api:
        created = api.post("users", {"name": name, "is_admin": admin})
    if json_output:
        render.print_json(created)
        return
    render.say(f"created user {created['user']['name']}; their token, shown only once:")
    typer.echo(created["token"]["secret"])


@command(user_app, "ls")
def user_ls(json_output: JsonOption = False) -> None:
    """List users."""
    with connect() as api:
        data = api.get("users")
    if json_output:
        render.print_json(data)
        return
    rows = [(u["name"], "admin" if u["is_admin"] else "user", _when(u["created_at"])) for u in data["users"]]
    render.console().print(render.plain_table(("NAME", "KIND", "CREATED"), rows))


# members ----------------------------------------------------------------------------------------------
def _members_path(gateway: str | None, *rest: str) -> str:
    return path_of("gateways", config.resolve_gateway(gateway), "members", *rest)


@command(member_app, "add")
def member_add(
    user: Annotated[str, typer.Argument(metavar="USER")],
    role: Annotated[str, typer.Argument(metavar="ROLE", help="viewer, developer, releaser or owner.")],
    gateway: GatewayOption = None,
) -> None:
    """Add USER to the gateway with ROLE, or change the role they have (owners only)."""
    if role not in ROLES:
        raise CliError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    with connect() as api:
        member = api.put(_members_path(gateway, user), {"role": role})
    render.say(f"{member['user']} is now {member['role']} of {config.resolve_gateway(gateway)}")


@command(member_app, "ls")
def member_ls(gateway: GatewayOption = None, json_output: JsonOption = False) -> None:
    """List the gateway's members and their roles."""
    with connect() as api:
        data = api.get(_members_path(gateway))
    if json_output:
        render.print_json(data)
        return
    rows = [(m["user"], m["role"], _when(m["added_at"]), m["added_by"]) for m in data["members"]]
    render.console().print(render.plain_table(("USER", "ROLE", "ADDED", "BY"), rows))


@command(member_app, "rm")
def member_rm(user: Annotated[str, typer.Argument(metavar="USER")], gateway: GatewayOption = None) -> None:
    """Remove USER from the gateway (owners only; the last owner stays)."""
    with connect() as api:
        api.delete(_members_path(gateway, user))
    render.say(f"removed {user} from {config.resolve_gateway(gateway)}")


# audit ---------------------------------------------------------------------------------------------------
@command(access_commands, "audit")
def audit(
    gateway: GatewayOption = None,
    accounts: Annotated[
        bool, typer.Option("--accounts", help="Users and tokens instead of a gateway (admin only).")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500, help="How many records.")] = 50,
    json_output: JsonOption = False,
) -> None:
    """Who changed members, tokens and settings, and when (deployments are in `fnstage history`)."""
    path = "audit" if accounts else path_of("gateways", config.resolve_gateway(gateway), "audit")
    with connect() as api:
        data = api.get(path, limit=limit)
    if json_output:
        render.print_json(data)
        return
    rows = [
        (_when(r["created_at"]), r["actor"], r["action"], r["target"], _details(r["details"]))
        for r in data["records"]
    ]
    render.console().print(render.plain_table(("WHEN", "WHO", "WHAT", "TARGET", "DETAILS"), rows))


def _details(details: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in details.items() if v is not None)
