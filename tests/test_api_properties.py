"""No input makes the API fail with a 500 or write anything on refusal (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fnstage.api.app import create_app
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store

_tmp = tempfile.TemporaryDirectory()
_store = Store.open(sqlite_url(Path(_tmp.name)))
_token = bootstrap_admin(_store)
_client = TestClient(create_app(Services.create(_store)), raise_server_exceptions=False)
_client.headers["Authorization"] = f"Bearer {_token}"
_client.post("/api/v1/gateways", json={"id": "fuzz"})

names = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"(dev|staging|prod|qa)/[a-z0-9_/-]{0,30}", fullmatch=True),
)
paths = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"[a-z_][a-z0-9_/.]{0,15}\.py", fullmatch=True),
    st.sampled_from(["index.py", "../x.py", "/abs.py", "a//b.py", "lib/__init__.py", "x.txt", "a\x00.py"]),
)
sources = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["def main(ctx):\n    return 1\n", "import requests\n", "def main(:\n", "main = 1\n"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


def published_count() -> int:
    with _store.read() as tx:
        return len(tx.list_functions("fuzz"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=names,
    files=st.dictionaries(paths, sources, max_size=4),
    extra=st.dictionaries(
        st.sampled_from(
            ["entrypoint", "semver", "changelog", "expected_version", "methods", "tags", "config"]
        ),
        json_values,
        max_size=3,
    ),
)
def test_save_never_answers_500(name: str, files: dict[str, str], extra: dict[str, Any]) -> None:
    before = published_count()
    r = _client.put(
        f"/api/v1/gateways/fuzz/functions/{quote(name, safe='/')}", json={"files": files, **extra}
    )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert set(r.json()) == {"error"} and r.json()["error"]["message"]
        assert published_count() == before  # a refusal changes nothing


@settings(max_examples=100, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(
            ["name", "base", "target", "semver", "note", "source_env", "source_history_id", "to_semver"]
        ),
        json_values,
        max_size=6,
    ),
    route=st.sampled_from(["promote", "release", "rollback", "rename"]),
)
def test_release_routes_never_answer_500(body: dict[str, Any], route: str) -> None:
    r = _client.post(f"/api/v1/gateways/fuzz/{route}", json=body)
    assert r.status_code < 500, r.text


@settings(max_examples=100, deadline=None)
@given(a=st.text(max_size=40), b=st.text(max_size=40))
def test_diff_refs_never_answer_500(a: str, b: str) -> None:
    r = _client.get("/api/v1/gateways/fuzz/diff", params={"a": a, "b": b})
    assert r.status_code < 500, r.text


def access_rows() -> tuple[int, int, int, int]:
    """Users, tokens, members and audit records: what access changes write."""
    from sqlalchemy import func, select

    from fnstage.store import schema as t

    with _store.read() as tx:
        count = lambda table: int(tx.conn.scalar(select(func.count()).select_from(table)) or 0)  # noqa: E731
        return count(t.users), count(t.tokens), count(t.members), count(t.audit_log)


unicode_names = st.one_of(
    st.text(max_size=70),
    st.from_regex(r"[a-z][a-z0-9._-]{0,70}", fullmatch=True),
    st.sampled_from(["bob\n", "b\u043eb", "\uff42ob", "../bob", "bob\x00", "Bob", " bob", "bob/../x"]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=unicode_names, admin=st.booleans())
def test_user_names_never_answer_500_and_refusals_write_nothing(name: str, admin: bool) -> None:
    before = access_rows()
    r = _client.post("/api/v1/users", json={"name": name, "is_admin": admin})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error"]["message"] and access_rows() == before
    else:
        assert name.isascii() and name.isprintable() and "/" not in name


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    user=unicode_names,
    role=st.one_of(st.text(max_size=12), st.sampled_from(["viewer", "owner", "developer"])),
)
def test_member_changes_never_answer_500_and_refusals_write_nothing(user: str, role: str) -> None:
    before = access_rows()
    r = _client.put(f"/api/v1/gateways/fuzz/members/{quote(user, safe='')}", json={"role": role})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error"]["message"] and access_rows() == before


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.one_of(st.text(max_size=70), st.sampled_from(["ci", "laptop 2", "x\n", "\u202eevil"])),
    # Finite floats: the client cannot encode NaN or infinity as JSON (the raw literals are tested below).
    expires=st.one_of(
        st.none(), st.integers(), st.text(max_size=5), st.floats(allow_nan=False, allow_infinity=False)
    ),
)
def test_token_requests_never_answer_500_and_refusals_write_nothing(name: str, expires: object) -> None:
    before = access_rows()
    r = _client.post("/api/v1/tokens", json={"name": name, "expires_in_seconds": expires})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error"]["message"] and access_rows() == before
    else:
        assert r.json()["secret"].startswith("fns_") and name.isascii()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gateway=st.one_of(st.text(max_size=50), st.from_regex(r"[a-z0-9-]{1,45}", fullmatch=True)))
def test_gateway_ids_never_answer_500_and_refusals_write_nothing(gateway: str) -> None:
    before = access_rows()
    r = _client.post("/api/v1/gateways", json={"id": gateway})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error"]["message"] and access_rows() == before
    else:
        assert gateway.isascii() and "\n" not in gateway
    for path in ("", "/members", "/audit", "/functions"):
        assert _client.get(f"/api/v1/gateways/{quote(gateway, safe='')}{path}").status_code < 500


def test_nan_and_infinity_literals_in_a_raw_body_are_refused_not_500() -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = '{"name": "ci", "expires_in_seconds": ' + literal + "}"
        r = _client.post("/api/v1/tokens", content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (literal, r.status_code, r.text)
        r = _client.put(
            "/api/v1/gateways/fuzz/functions/dev/nan/fn",
            content='{"files": {"index.py": "def main(ctx):\\n    return 1\\n"}, "timeout_s": '
            + literal
            + "}",
            headers={"content-type": "application/json"},
        )
        assert 400 <= r.status_code < 500, (literal, r.status_code, r.text)
