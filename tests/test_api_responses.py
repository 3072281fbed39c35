"""The API's responses are part of its contract: every 2xx body has a schema in the OpenAPI document
(`api.responses`), bodies carry what they carried before, and the document can be made without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fnstage.api import serialize
from fnstage.api.app import PREFIX, create_app
from fnstage.api.document import main, openapi_document
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.service.rollouts import Rollout
from fnstage.store.store import Store
from support.functions import hello_files


@pytest.fixture
def client(store: Store) -> TestClient:
    token = bootstrap_admin(store)
    assert token is not None
    client = TestClient(create_app(Services.create(store)))
    client.headers["Authorization"] = f"Bearer {token}"
    client.post(f"{PREFIX}/gateways", json={"id": "demo"}).raise_for_status()
    return client


def _missing_schemas(document: dict[str, Any]) -> list[str]:
    """Each 2xx response of each operation whose JSON body is not a named model with properties."""
    schemas = document["components"]["schemas"]
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith("2"):
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                ref = schema.get("$ref", "")
                model = schemas.get(ref.removeprefix("#/components/schemas/"), {}) if ref else {}
                if not model.get("properties"):
                    missing.append(f"{method.upper()} {path} {status}: {schema or 'no schema'}")
    return missing


def test_every_2xx_response_of_every_route_has_a_schema() -> None:
    document = openapi_document()
    assert len(document["paths"]) > 30
    assert _missing_schemas(document) == []


def test_the_walk_finds_a_route_answering_a_free_form_dict() -> None:
    # what every route answered before `api.responses`: `dict[str, Any]` is an object of anything
    document = {
        "components": {"schemas": {"Me": {"properties": {"name": {"type": "string"}}}}},
        "paths": {
            "/a": {
                "get": {
                    "responses": {"200": {"content": {"application/json": {"schema": {"type": "object"}}}}}
                }
            },
            "/b": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Me"}}}
                        }
                    }
                }
            },
            "/c": {"post": {"responses": {"201": {"description": "no body declared"}}}},
        },
    }
    assert _missing_schemas(document) == ["GET /a 200: {'type': 'object'}", "POST /c 201: no schema"]


def test_the_document_entry_writes_the_document(tmp_path: Any) -> None:
    out = tmp_path / "openapi.json"
    assert main([str(out)]) == 0
    assert json.loads(out.read_text())["components"]["schemas"]["Saved"]["required"] == [
        "function",
        "history",
        "changed",
    ]


def test_bodies_leave_out_what_they_carry_only_sometimes(client: TestClient) -> None:
    base = f"{PREFIX}/gateways/demo/functions/dev/user/me"
    saved = client.put(base, json={"files": hello_files()})
    assert saved.status_code == 201, saved.text
    body = saved.json()
    assert "files" not in body["function"]  # not `"files": null`: only `?files=true` carries them
    assert "url" in body["history"]
    assert "files" not in client.get(base).json()
    assert set(client.get(f"{base}?files=true").json()["files"]) == set(hello_files())
    listed = client.get(f"{PREFIX}/gateways/demo/functions").json()["functions"]
    assert "runtime" not in listed[0]
    listed = client.get(f"{PREFIX}/gateways/demo/functions?runtime=true").json()["functions"]
    assert listed[0]["runtime"]["summary"] == "no runtime"


def test_a_rollout_keeps_the_serializers_key_order(client: TestClient) -> None:
    # the CLI's --json prints a body as it came: the model's field order is the serializer's
    client.put(
        f"{PREFIX}/gateways/demo/functions/dev/user/me", json={"files": hello_files()}
    ).raise_for_status()
    body = client.get(f"{PREFIX}/gateways/demo/rollout/dev/user/me")
    assert body.status_code == 200, body.text
    rollout = serialize.rollout(Rollout("dev/user/me", 1, datetime.now(UTC), []))
    assert list(body.json()) == list(rollout)
