"""Who may call which route: THE one place where every API request is authorised.

`RULES` maps each route (method, path template) to what it needs: nobody (`PUBLIC`), a valid token
(`SIGNED_IN`), an admin (`ADMIN`), or a role on the gateway the request names (`Gateway`). `authorize`
runs before every route (an app-wide dependency), finds the route's rule, and refuses what it does not
allow. A route without a rule is refused (fail closed), and tests walk every route to prove each has
one, so a new route cannot ship unguarded.

Gateways are secret to non-members: every refusal that would tell a non-member a gateway exists is the
same 404 as for a gateway that does not exist. A member lacking the role gets a 403 naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from fnstage.domain.errors import Forbidden, InvalidInput
from fnstage.domain.names import check_gateway_id
from fnstage.service import Services
from fnstage.service.identity import Actor, authenticate, identify, note_use
from fnstage.service.members import no_gateway
from fnstage.service.roles import allows

bearer = HTTPBearer(auto_error=False, description="an fnstage API token")

# what a rule needs from a request when the role depends on it: path parameters and the JSON body
RoleOf = Callable[[Mapping[str, str], Mapping[str, Any]], str]


@dataclass(frozen=True)
class Public:
    """No token needed (health)."""


@dataclass(frozen=True)
class SignedIn:
    """Any valid token: the route acts on the caller's own things (tokens, the gateways they see)."""


@dataclass(frozen=True)
class Admin:
    """Only an admin (users.is_admin)."""


@dataclass(frozen=True)
class Gateway:
    """A role on the gateway named by the path (or, for the console, the body's `gateway`)."""

    role: str | RoleOf
    gateway_in_body: bool = False

    def needed(self, path: Mapping[str, str], body: Mapping[str, Any]) -> str:
        return self.role if isinstance(self.role, str) else self.role(path, body)


Rule = Public | SignedIn | Admin | Gateway
PUBLIC, SIGNED_IN, ADMIN = Public(), SignedIn(), Admin()


# the roles that depend on where code goes ------------------------------------------------------------
def role_to_change(env: object) -> str:
    """Changing dev (save, rename, delete, promote into staging) is a developer's work; anything
    touching staging's or prod's running code beyond that, or a value we do not know, a releaser's."""
    return "developer" if env == "dev" else "releaser"


def role_for_canary(path: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """Promoting or aborting a canary by hand: the role that changes that environment's code."""
    return role_to_change(path.get("env"))


def role_for_release(path: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """THE function deciding the role a promote, release, rollback, rename or delete needs.

    - promote: into staging (from dev) a developer; into prod a releaser
    - release: the current version of an environment into staging a developer; a history entry
      (possibly a rollback) or anything into prod a releaser
    - rollback: a releaser, anywhere
    - rename and delete: in dev a developer; in staging or prod a releaser
    A body we cannot read asks for the lowest role the route allows at all, so a member's malformed
    request gets the usual field-level 422 rather than a 403.
    """
    kind = path["route"]
    if kind == "rollback":
        return "releaser"
    if kind == "promote":
        return "developer" if body.get("target") in (None, "dev", "staging") else "releaser"
    if kind == "release":
        from_history = body.get("source_history_id") is not None
        return (
            "developer" if not from_history and body.get("target") in (None, "dev", "staging") else "releaser"
        )
    if kind == "rename":
        name = body.get("name")
        return role_to_change(name.split("/", 1)[0] if isinstance(name, str) else "dev")
    if kind == "delete":
        return role_to_change(path.get("env"))
    raise AssertionError(f"no release rule for {kind!r}")


def role_for_trigger(path: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """Adding, removing, pausing or resuming a trigger: in dev a developer's, in staging or prod a
    releaser's (a schedule changes what runs there as surely as a release does). The environment is
    the path's, or for a new trigger the first segment of the body's `function`."""
    env = path.get("env")
    if env is None:
        function = body.get("function")
        env = function.split("/", 1)[0] if isinstance(function, str) else "dev"
    return role_to_change(env)


def role_for_configuration(path: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """Changing an environment's configuration or secrets: dev's a developer's, staging's and prod's a
    releaser's (a setting changes what runs there as surely as a release does)."""
    return role_to_change(path.get("env"))


def _release(kind: str) -> RoleOf:
    def role(path: Mapping[str, str], body: Mapping[str, Any]) -> str:
        return role_for_release({**path, "route": kind}, body)

    role.__name__ = f"role_for_{kind}"
    return role


F = "/gateways/{gateway}"
RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/me"): SIGNED_IN,
    # users and tokens
    ("GET", "/users"): ADMIN,
    ("POST", "/users"): ADMIN,
    ("GET", "/tokens"): SIGNED_IN,
    ("POST", "/tokens"): SIGNED_IN,
    ("DELETE", "/tokens/{token_id}"): SIGNED_IN,  # one's own; an admin's: anyone's
    ("GET", "/audit"): ADMIN,
    # gateways
    ("GET", "/gateways"): SIGNED_IN,  # lists only the caller's gateways
    ("POST", "/gateways"): ADMIN,
    ("GET", F): Gateway("viewer"),
    ("PATCH", F): Gateway("owner"),
    ("DELETE", F): Gateway("owner"),
    ("GET", F + "/dependencies"): Gateway("viewer"),
    ("PUT", F + "/dependencies"): Gateway("owner"),
    ("GET", F + "/members"): Gateway("viewer"),
    ("PUT", F + "/members/{user}"): Gateway("owner"),
    ("DELETE", F + "/members/{user}"): Gateway("owner"),
    ("GET", F + "/audit"): Gateway("viewer"),
    # functions
    ("GET", F + "/functions"): Gateway("viewer"),
    ("GET", F + "/functions/{env}/{base}"): Gateway("viewer"),
    ("PUT", F + "/functions/{env}/{base}"): Gateway("developer"),  # the release policy allows dev only
    ("DELETE", F + "/functions/{env}/{base}"): Gateway(_release("delete")),
    ("GET", F + "/history/{env}/{base}"): Gateway("viewer"),
    ("GET", F + "/history-entries/{history_id}"): Gateway("viewer"),
    ("GET", F + "/diff"): Gateway("viewer"),
    ("GET", F + "/rollout/{env}/{base}"): Gateway("viewer"),
    ("GET", F + "/logs/{env}/{base}"): Gateway("viewer"),
    ("GET", F + "/stats/{env}/{base}"): Gateway("viewer"),
    ("GET", F + "/overview/{base}"): Gateway("viewer"),
    # releases
    ("GET", F + "/release-options/{base}"): Gateway("viewer"),
    ("POST", F + "/promote"): Gateway(_release("promote")),
    ("POST", F + "/release"): Gateway(_release("release")),
    ("POST", F + "/rollback"): Gateway(_release("rollback")),
    ("POST", F + "/rename"): Gateway(_release("rename")),
    # canary releases: reading one is reading; deciding one by hand changes what the environment serves
    ("GET", F + "/canary/{env}/{base}"): Gateway("viewer"),
    ("POST", F + "/canary/{env}/{base}/promote"): Gateway(role_for_canary),
    ("POST", F + "/canary/{env}/{base}/abort"): Gateway(role_for_canary),
    # triggers: a schedule belongs to one environment; changing it needs that environment's role
    ("GET", F + "/triggers"): Gateway("viewer"),
    ("POST", F + "/triggers"): Gateway(role_for_trigger),
    ("GET", F + "/triggers/{env}/{name}"): Gateway("viewer"),
    ("DELETE", F + "/triggers/{env}/{name}"): Gateway(role_for_trigger),
    ("POST", F + "/triggers/{env}/{name}/pause"): Gateway(role_for_trigger),
    ("POST", F + "/triggers/{env}/{name}/resume"): Gateway(role_for_trigger),
    ("GET", F + "/triggers/{env}/{name}/runs"): Gateway("viewer"),
    # configuration and secrets: viewers read keys only (the handler hides values); a secret's value
    # is never read back by anyone
    ("GET", F + "/config/{env}"): Gateway("viewer"),
    ("PATCH", F + "/config/{env}"): Gateway(role_for_configuration),
    ("GET", F + "/config/{env}/history"): Gateway("viewer"),
    ("GET", F + "/config/{env}/required/{base}"): Gateway("viewer"),
    ("POST", F + "/config/{env}/rollback"): Gateway(role_for_configuration),
    ("PUT", F + "/secrets/{env}/{key}"): Gateway(role_for_configuration),
    ("DELETE", F + "/secrets/{env}/{key}"): Gateway(role_for_configuration),
    ("POST", F + "/secrets/rotate-key"): Gateway("owner"),
    # deploy webhooks: a receiver sees every deployment of the gateway, so only an owner adds one
    ("GET", F + "/webhooks"): Gateway("viewer"),
    ("POST", F + "/webhooks"): Gateway("owner"),
    ("DELETE", F + "/webhooks/{webhook_id}"): Gateway("owner"),
    ("GET", F + "/webhooks/{webhook_id}/deliveries"): Gateway("viewer"),
    # the console's "try it": invoking a function is reading it (the runtime serves it publicly anyway)
    ("POST", "/console/try"): Gateway("viewer", gateway_in_body=True),
}


def rule_for(method: str, path_template: str, prefix: str = "") -> Rule | None:
    """The rule of a route, by its method and path template (`{base}`, not `{base:path}`)."""
    template = path_template[len(prefix) :] if prefix and path_template.startswith(prefix) else path_template
    return RULES.get((method, template))


async def authorize(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Actor | None:
    """Run before every route: authenticate when the rule needs it, then check the rule."""
    route = request.scope.get("route")
    template: str = getattr(route, "path_format", request.url.path)
    rule = rule_for(request.method, template, request.app.state.api_prefix)
    if rule is None:
        raise Forbidden(f"no authorization rule for {request.method} {template}: refused")
    if isinstance(rule, Public):
        return None
    services: Services = request.app.state.services
    token = credentials.credentials if credentials else None
    if not isinstance(rule, Gateway):
        actor = await run_in_threadpool(authenticate, services.store, token, services.accounts.clock())
        request.state.actor = actor
        if isinstance(rule, Admin) and not actor.is_admin:
            raise Forbidden("only an admin may do this", details={"needs": "admin"})
        return actor
    # the body is read only when the rule depends on it (FastAPI reuses Starlette's cached bytes)
    body = await _json_body(request) if rule.gateway_in_body or callable(rule.role) else {}
    gateway = body.get("gateway") if rule.gateway_in_body else request.path_params.get("gateway")
    actor, role = await run_in_threadpool(_actor_and_role, services, token, gateway)
    request.state.actor = actor
    request.state.role = role  # handlers that show less to lower roles (configuration values)
    if not isinstance(gateway, str):
        return actor  # no gateway to check: the route's validation answers 422
    if role is None:
        raise no_gateway(gateway)
    needed = rule.needed(request.path_params, body)
    if not allows(role, needed):
        raise Forbidden(
            f"this needs the {needed} role on gateway {gateway}; you are {role}",
            details={"needs": needed, "role": role},
        )
    return actor


def _actor_and_role(services: Services, token: str | None, gateway: object) -> tuple[Actor, str | None]:
    """The caller and their role on the gateway, in one statement on one worker thread: every API
    request pays for this, a save included (on PostgreSQL one round trip, see `Store.read_one`). The
    token is checked before the gateway's name, as a caller without a valid token learns nothing."""
    valid_gateway = gateway if isinstance(gateway, str) and _is_gateway_id(gateway) else None
    at = services.accounts.clock()
    actor, used, role = services.store.read_one(lambda tx: identify(tx, token, valid_gateway, at))
    if isinstance(gateway, str) and valid_gateway is None:
        check_gateway_id(gateway)  # raises, naming the field and what is allowed
    note_use(services.store, used)
    return actor, role


def _is_gateway_id(text: str) -> bool:
    try:
        check_gateway_id(text)
    except InvalidInput:
        return False
    return True


async def _json_body(request: Request) -> Mapping[str, Any]:
    """The request's JSON object (cached by Starlette: FastAPI parses the same one), {} if none."""
    if request.method in ("GET", "HEAD", "DELETE"):
        return {}
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def current_actor(request: Request, _: Actor | None = Depends(authorize)) -> Actor:
    """The authenticated caller, for routes that need their name (history names its actor)."""
    actor: Actor = request.state.actor
    return actor
