"""Every role x every route, generated from the authorization table and the OpenAPI document.

Who is asking: anonymous, a user who is a member of another gateway only (an outsider), a viewer, a
developer, a releaser, an owner, and an admin. What they may do comes from `authorization.RULES` for
routes whose role is fixed, and from `EXPECTED_RELEASE_ROLES` below (the spec, written out again) for
promote/release/rollback/rename/delete, whose role depends on the environment a request touches.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from fnstage.api.app import PREFIX, create_app
from fnstage.api.authorization import ADMIN, PUBLIC, RULES, SIGNED_IN, Gateway, rule_for
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.service.roles import ROLES, allows
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store
from support.functions import hello_files

WHO = ("anonymous", "outsider", *ROLES, "admin")
GW = "alpha"

# Path parameters and bodies that reach the route's own checks whatever the role; things named here
# either exist or are harmless to change (carol is nobody's concern; token 999999 does not exist).
PATH_VALUES = {
    "gateway": GW,
    "env": "dev",
    "base": "user/me",
    "history_id": "1",
    "user": "carol",
    "token_id": "999999",
    "name": "nothing",  # a trigger's
    "key": "STRIPE_KEY",  # a secret's
    "webhook_id": "999999",  # a webhook's
}
QUERY = {
    ("GET", "/gateways/{gateway}/diff"): {"a": "dev/user/me", "b": "dev/user/me"},
    ("GET", "/gateways/{gateway}/config/{env}/required/{base}"): {"source": "dev"},
    ("GET", "/gateways/{gateway}/release-options/{base}"): {"source_env": "dev"},
}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/users"): {"name": "someone"},
    ("POST", "/tokens"): {"name": "matrix"},
    ("POST", "/gateways"): {"id": "gamma"},
    ("PATCH", "/gateways/{gateway}"): {},
    ("PUT", "/gateways/{gateway}/dependencies"): {"dependencies": []},
    ("PUT", "/gateways/{gateway}/members/{user}"): {"role": "viewer"},
    ("PUT", "/gateways/{gateway}/functions/{env}/{base}"): {"files": hello_files()},
    ("POST", "/console/try"): {"gateway": GW, "name": "dev/user/me"},
    ("POST", "/gateways/{gateway}/webhooks"): {"url": "http://127.0.0.1:9/hook"},
}

# The roles that depend on where code goes, as the issue states them: (method, path, body, env) -> role
EXPECTED_RELEASE_ROLES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/gateways/{gateway}/promote", {"name": "dev/user/me", "target": "staging"}, "developer"),
    ("POST", "/gateways/{gateway}/promote", {"name": "staging/user/me", "target": "prod"}, "releaser"),
    ("POST", "/gateways/{gateway}/promote", {"name": "dev/user/me", "target": "prod"}, "releaser"),
    (
        "POST",
        "/gateways/{gateway}/release",
        {"base": "user/me", "source_env": "dev", "target": "staging"},
        "developer",
    ),
    (
        "POST",
        "/gateways/{gateway}/release",
        {"base": "user/me", "source_env": "staging", "target": "prod"},
        "releaser",
    ),
    (
        "POST",
        "/gateways/{gateway}/release",
        {"base": "user/me", "source_history_id": 1, "target": "staging"},
        "releaser",
    ),
    ("POST", "/gateways/{gateway}/rollback", {"name": "dev/user/me", "to_semver": "9.9.9"}, "releaser"),
    ("POST", "/gateways/{gateway}/rollback", {"name": "prod/user/me", "to_semver": "9.9.9"}, "releaser"),
    (
        "POST",
        "/gateways/{gateway}/rename",
        {"name": "dev/user/nothing", "new_name": "dev/user/x"},
        "developer",
    ),
    (
        "POST",
        "/gateways/{gateway}/rename",
        {"name": "prod/user/nothing", "new_name": "prod/user/x"},
        "releaser",
    ),
    ("DELETE", "/gateways/{gateway}/functions/dev/user/nothing", {}, "developer"),
    ("DELETE", "/gateways/{gateway}/functions/staging/user/nothing", {}, "releaser"),
    ("DELETE", "/gateways/{gateway}/functions/prod/user/nothing", {}, "releaser"),
]
# Triggers, as the issue states them: creating (or changing) one in staging or prod needs a releaser
EXPECTED_TRIGGER_ROLES: list[tuple[str, str, dict[str, Any], str]] = [
    *[
        (
            "POST",
            "/gateways/{gateway}/triggers",
            {"function": f"{env}/user/nothing", "cron": "0 3 * * *"},
            need,
        )
        for env, need in (("dev", "developer"), ("staging", "releaser"), ("prod", "releaser"))
    ],
    *[
        (method, f"/gateways/{{gateway}}/triggers/{env}/nothing{suffix}", {}, need)
        for method, suffix in (("DELETE", ""), ("POST", "/pause"), ("POST", "/resume"))
        for env, need in (("dev", "developer"), ("staging", "releaser"), ("prod", "releaser"))
    ],
]
# Configuration and secrets, as the issue states them: developers set dev's, releasers staging's and prod's
EXPECTED_CONFIG_ROLES: list[tuple[str, str, dict[str, Any], str]] = [
    (method, f"/gateways/{{gateway}}/{what.format(env=env)}", body, need)
    for method, what, body in (
        ("PATCH", "config/{env}", {"set": {"LIMIT": "5"}}),
        ("POST", "config/{env}/rollback", {"to": 1}),
        ("PUT", "secrets/{env}/{{key}}", {"value": "s3cret"}),
        ("DELETE", "secrets/{env}/{{key}}", {}),
    )
    for env, need in (("dev", "developer"), ("staging", "releaser"), ("prod", "releaser"))
]
# Canaries (issue 14): deciding one by hand needs the role that changes that environment's code
EXPECTED_CANARY_ROLES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", f"/gateways/{{gateway}}/canary/{env}/user/nothing/{action}", {}, need)
    for action in ("promote", "abort")
    for env, need in (("dev", "developer"), ("staging", "releaser"), ("prod", "releaser"))
]
DYNAMIC = (
    {
        (m, re.sub(r"/functions/\w+/user/nothing$", "/functions/{env}/{base}", p))
        for m, p, _, _ in EXPECTED_RELEASE_ROLES
    }
    | {
        (m, re.sub(r"/canary/\w+/user/nothing/", "/canary/{env}/{base}/", p))
        for m, p, _, _ in EXPECTED_CANARY_ROLES
    }
    | {
        (m, re.sub(r"/triggers/\w+/nothing", "/triggers/{env}/{name}", p))
        for m, p, _, _ in EXPECTED_TRIGGER_ROLES
    }
    | {(m, re.sub(r"/(config|secrets)/\w+", r"/\1/{env}", p)) for m, p, _, _ in EXPECTED_CONFIG_ROLES}
)


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every API route of the app (hidden ones too, such as the console's), as (method, template)."""
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            found += [
                (method, context.path_format.removeprefix(PREFIX)) for method in sorted(context.methods)
            ]
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Gateway alpha with a function in every environment; one user per role; an outsider owning beta."""
    store = Store.open(sqlite_url(Path(tmp_path_factory.mktemp("roles"))))
    admin = bootstrap_admin(store)
    client = TestClient(create_app(Services.create(store)), raise_server_exceptions=False)
    as_admin = {"Authorization": f"Bearer {admin}"}
    tokens = {"admin": admin or ""}
    for gateway in (GW, "beta"):
        client.post(f"{PREFIX}/gateways", json={"id": gateway}, headers=as_admin).raise_for_status()
    for who in ("outsider", *ROLES, "carol"):
        answer = client.post(f"{PREFIX}/users", json={"name": who}, headers=as_admin)
        tokens[who] = answer.json()["token"]["secret"]
    for role in ROLES:
        client.put(
            f"{PREFIX}/gateways/{GW}/members/{role}", json={"role": role}, headers=as_admin
        ).raise_for_status()
    client.put(
        f"{PREFIX}/gateways/beta/members/outsider", json={"role": "owner"}, headers=as_admin
    ).raise_for_status()
    base = f"{PREFIX}/gateways/{GW}"
    client.put(
        f"{base}/functions/dev/user/me", json={"files": hello_files()}, headers=as_admin
    ).raise_for_status()
    for target, semver in (("staging", "1.0.0-rc.1"), ("prod", "1.0.0")):
        name = "dev/user/me" if target == "staging" else "staging/user/me"
        body = {"name": name, "target": target, "semver": semver, "note": "setup"}
        client.post(f"{base}/promote", json=body, headers=as_admin).raise_for_status()
    yield client, tokens
    store.close()


def _call(
    client: TestClient, tokens: dict[str, str], who: str, method: str, path: str, body: Any = None
) -> Any:
    headers = {} if who == "anonymous" else {"Authorization": f"Bearer {tokens[who]}"}
    query = QUERY.get((method, path), {})
    prefix = "" if path.startswith("/console/") else PREFIX  # the console's route is not under /api/v1
    url = prefix + re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
    return client.request(method, url, headers=headers, params=query, json=body)


def _assert_outcome(response: Any, who: str, need: str, gateway_route: bool, what: str) -> None:
    error = (
        response.json().get("error")
        if response.headers.get("content-type", "").startswith("application/json")
        else None
    )
    if who == "anonymous" and need != "public":
        assert response.status_code == 401, what
    elif who == "outsider" and gateway_route:
        assert response.status_code == 404 and error["message"] == f"no gateway {GW!r}", what
    elif _allowed(who, need):
        assert response.status_code not in (401, 403), what
        assert not (response.status_code == 404 and error and error["field"] == "gateway"), what
    else:
        assert response.status_code == 403, what
        assert error["details"]["needs"] == need and need in error["message"], what


def _allowed(who: str, need: str) -> bool:
    if need in ("public", "signed_in"):
        return True
    if who == "admin":
        return True
    if need == "admin":
        return False
    return allows(who if who in ROLES else None, need)


def _bare_app() -> FastAPI:
    return create_app(Services.create(Store.open(sqlite_url(Path(tempfile.mkdtemp())))))


def _static_cases() -> list[tuple[str, str, str, bool]]:
    app = _bare_app()
    cases = []
    for method, path in _routes(app):
        if (method, path) in DYNAMIC:
            continue
        rule = rule_for(method, path)
        assert rule is not None, f"{method} {path} has no authorization rule"
        if rule is PUBLIC:
            need, gateway_route = "public", False
        elif rule is SIGNED_IN:
            need, gateway_route = "signed_in", False
        elif rule is ADMIN:
            need, gateway_route = "admin", False
        else:
            assert isinstance(rule, Gateway) and isinstance(rule.role, str)
            need, gateway_route = rule.role, True
        cases.append((method, path, need, gateway_route))
    return cases


STATIC = _static_cases()


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(
    ("method", "path", "need", "gateway_route"), STATIC, ids=[f"{m} {p}" for m, p, _, _ in STATIC]
)
def test_every_route_allows_or_refuses_as_the_table_says(
    world, who, method, path, need, gateway_route
) -> None:
    client, tokens = world
    response = _call(client, tokens, who, method, path, BODIES.get((method, path)))
    _assert_outcome(
        response,
        who,
        need,
        gateway_route,
        f"{who}: {method} {path} -> {response.status_code} {response.text[:300]}",
    )


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(
    ("method", "path", "body", "need"),
    EXPECTED_RELEASE_ROLES + EXPECTED_TRIGGER_ROLES + EXPECTED_CONFIG_ROLES + EXPECTED_CANARY_ROLES,
    ids=[
        f"{m} {p} {b}"
        for m, p, b, _ in EXPECTED_RELEASE_ROLES
        + EXPECTED_TRIGGER_ROLES
        + EXPECTED_CONFIG_ROLES
        + EXPECTED_CANARY_ROLES
    ],
)
def test_moving_code_needs_the_role_of_the_environment_it_touches(
    world, who, method, path, body, need
) -> None:
    client, tokens = world
    response = _call(client, tokens, who, method, path, body or None)
    _assert_outcome(
        response,
        who,
        need,
        True,
        f"{who}: {method} {path} {body} -> {response.status_code} {response.text[:300]}",
    )


# The issue's words, written out per route, so that a change to the table itself is caught too.
G = "/gateways/{gateway}"
SPEC = {
    "public": {("GET", "/health")},
    "signed_in": {
        ("GET", "/me"),
        ("GET", "/tokens"),
        ("POST", "/tokens"),
        ("DELETE", "/tokens/{token_id}"),
        ("GET", "/gateways"),
    },
    "admin": {("GET", "/users"), ("POST", "/users"), ("GET", "/audit"), ("POST", "/gateways")},
    "viewer": {("GET", G)}
    | {
        ("GET", G + p)
        for p in (
            "/dependencies",
            "/members",
            "/audit",
            "/functions",
            "/functions/{env}/{base}",
            "/history/{env}/{base}",
            "/history-entries/{history_id}",
            "/diff",
            "/canary/{env}/{base}",
            "/rollout/{env}/{base}",
            "/logs/{env}/{base}",
            "/stats/{env}/{base}",
            "/overview/{base}",
            "/release-options/{base}",
            "/triggers",
            "/triggers/{env}/{name}",
            "/triggers/{env}/{name}/runs",
            "/webhooks",
            "/webhooks/{webhook_id}/deliveries",
            "/config/{env}",
            "/config/{env}/history",
            "/config/{env}/required/{base}",
        )
    }
    | {("POST", "/console/try")},
    "developer": {("PUT", G + "/functions/{env}/{base}")},
    "releaser": set(),
    "owner": {
        ("PATCH", G),
        ("DELETE", G),
        ("PUT", G + "/dependencies"),
        ("PUT", G + "/members/{user}"),
        ("DELETE", G + "/members/{user}"),
        ("POST", G + "/webhooks"),  # a receiver sees every deployment of the gateway
        ("DELETE", G + "/webhooks/{webhook_id}"),
        ("POST", G + "/secrets/rotate-key"),
    },
}


def test_the_table_says_what_the_issue_says() -> None:
    assert {(m, p): need for need, routes in SPEC.items() for m, p in routes} == {
        (m, p): need for m, p, need, _ in STATIC
    }


def test_every_route_of_the_openapi_document_has_a_rule() -> None:
    app = _bare_app()
    documented = [
        (method.upper(), path.removeprefix(PREFIX))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]
    assert len(documented) > 30
    missing = [f"{m} {p}" for m, p in documented if rule_for(m, p) is None]
    assert not missing, f"routes without an authorization rule: {missing}"
    every = set(_routes(app))
    assert every >= set(documented) and not [r for r in RULES if r not in every], "a rule names no route"
    covered = {(m, p) for m, p, _, _ in STATIC} | DYNAMIC
    assert covered == every


def test_a_route_without_a_rule_is_refused(tmp_path: Path) -> None:
    store = Store.open(sqlite_url(tmp_path))
    token = bootstrap_admin(store)
    app = create_app(Services.create(store))

    @app.get(f"{PREFIX}/unguarded")
    def unguarded() -> dict[str, str]:
        return {"secret": "yes"}

    app.router.routes.insert(0, app.router.routes.pop())  # before the console's mount at /
    r = TestClient(app).get(f"{PREFIX}/unguarded", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and "no authorization rule" in r.json()["error"]["message"]


def test_a_member_of_another_gateway_cannot_tell_alpha_from_a_missing_gateway(world) -> None:
    client, tokens = world
    for method, path, _, gateway_route in STATIC:
        if not gateway_route or path == "/console/try":
            continue
        body = BODIES.get((method, path))
        alpha = _call(client, tokens, "outsider", method, path, body)
        url = PREFIX + re.sub(r"\{(\w+)\}", lambda m: {**PATH_VALUES, "gateway": "nope"}[m.group(1)], path)
        missing = client.request(
            method,
            url,
            headers={"Authorization": f"Bearer {tokens['outsider']}"},
            params=QUERY.get((method, path), {}),
            json=body,
        )
        assert alpha.status_code == missing.status_code == 404, (method, path)
        assert alpha.json()["error"] == {**missing.json()["error"], "message": f"no gateway {GW!r}"}


def test_gateway_list_shows_only_the_callers_gateways(world) -> None:
    client, tokens = world
    ids = lambda who: {g["id"] for g in _call(client, tokens, who, "GET", "/gateways").json()["gateways"]}  # noqa: E731
    assert ids("outsider") == {"beta"}
    assert ids("viewer") == {GW}
    assert ids("admin") >= {GW, "beta"}
