"""schemathesis against the API's own OpenAPI document, in-process (ASGI), as the admin and as an outsider.

Checks enabled: no 5xx (`not_a_server_error`), every response matches the schema documented for its
status (`response_schema_conformance`), the documented content type (`content_type_conformance`) and a
documented status code (`status_code_conformance`: the error statuses are documented on every route).
Bounded: a few examples per operation, so the whole run takes well under a minute.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fnstage.api.app import PREFIX, create_app
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store
from support.functions import hello_files

_tmp = tempfile.TemporaryDirectory()
_store = Store.open(sqlite_url(Path(_tmp.name)))
_admin = bootstrap_admin(_store)
_app = create_app(Services.create(_store))


def _setup() -> dict[str, str]:
    from fastapi.testclient import TestClient

    client = TestClient(_app)
    admin = {"Authorization": f"Bearer {_admin}"}
    client.post(f"{PREFIX}/gateways", json={"id": "demo"}, headers=admin).raise_for_status()
    client.put(f"{PREFIX}/gateways/demo/functions/dev/user/me", json={"files": hello_files()}, headers=admin)
    outsider = client.post(f"{PREFIX}/users", json={"name": "outsider"}, headers=admin).json()
    return {"admin": _admin or "", "outsider": outsider["token"]["secret"]}


TOKENS = _setup()
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]
schema = schemathesis.openapi.from_asgi(f"{PREFIX}/openapi.json", _app)


@pytest.mark.parametrize("who", ["admin", "outsider"])
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_keeps_its_openapi_promises(case: schemathesis.Case, who: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKENS[who]}"}, checks=CHECKS)
