"""What an adversarial tester sent the API: each input refused with a clear error, and nothing changed."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fnstage.api.app import PREFIX, create_app
from fnstage.api.schemas import OPTIONAL_NOTE_PATTERN
from fnstage.domain.errors import InvalidInput
from fnstage.domain.policy import check_note
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.store.engine import sqlite_url
from fnstage.store.runtime_status import RuntimeIdentity, RuntimeReporter
from fnstage.store.store import Store
from fnstage.testing import free_port
from support.functions import hello_files

GW = f"{PREFIX}/gateways/demo"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(sqlite_url(tmp_path))
    yield store
    store.close()


@pytest.fixture
def api(store: Store) -> TestClient:
    token = bootstrap_admin(store)
    client = TestClient(
        create_app(Services.create(store), runtime_url="http://127.0.0.1:1"), raise_server_exceptions=False
    )
    client.headers["Authorization"] = f"Bearer {token}"
    client.post(f"{PREFIX}/gateways", json={"id": "demo"}).raise_for_status()
    client.put(f"{GW}/functions/dev/user/me", json={"files": hello_files()}).raise_for_status()
    return client


# --- path parameters: a trailing newline (or any control character or space) names nothing ----------
@pytest.mark.parametrize("suffix", ["%0a", "%0A", "%0d", "%09", "%00", "%20", "%7f"])
def test_a_control_character_in_a_path_parameter_is_refused_and_saves_nothing(
    api: TestClient, suffix: str
) -> None:
    r = api.put(f"{GW}/functions/dev/y{suffix}", json={"files": hello_files()})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_request" and "path" in error["message"]
    assert "control character or a space" in error["message"]
    names = [f["name"] for f in api.get(f"{GW}/functions").json()["functions"]]
    assert names == ["dev/user/me"]


def test_a_trailing_newline_on_a_token_id_revokes_nothing(api: TestClient) -> None:
    made = api.post(f"{PREFIX}/tokens", json={"name": "ci"}).json()
    r = api.delete(f"{PREFIX}/tokens/{made['id']}%0a")
    assert r.status_code == 400
    listed = {t["id"]: t for t in api.get(f"{PREFIX}/tokens").json()["tokens"]}
    assert listed[made["id"]]["revoked_at"] is None


# --- the console's "try it": a bad query or content type is the caller's mistake, not a 500 ---------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("query", "name=a\tb"),
        ("query", "name=a\nb"),
        ("query", "name=a b"),
        ("content_type", "text/plain; charset=\u00e9"),
        ("content_type", "text/plain\r\nx-evil: 1"),
    ],
)
def test_console_try_refuses_a_query_or_content_type_it_cannot_send(
    api: TestClient, field: str, value: str
) -> None:
    r = api.post("/console/try", json={"gateway": "demo", "name": "dev/user/me", field: value})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_console_try_passes_a_plain_query_on(api: TestClient) -> None:
    # the runtime URL points at a closed port: reaching the send step proves the query was accepted
    r = api.post("/console/try", json={"gateway": "demo", "name": "dev/user/me", "query": "name=Ada&x=%20"})
    assert r.status_code == 200 and r.json()["reached"] is False
    assert r.json()["url"].endswith("/demo/dev/user/me?name=Ada&x=%20")


# --- a runtime that answers nonsense to the control plane: 502 naming it, not a 500 -------------------
class _Runtime(http.server.BaseHTTPRequestHandler):
    answer = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b"[1, 2]",
        b'{"invocations": [1]}',
        b'{"invocations": {"a": 1}}',
        b'{"invocations": [{"request_id": "a", "time": "soon"}, {"request_id": "b", "time": 1}]}',
    ],
    ids=["not-json", "a-list", "entries-not-objects", "invocations-not-a-list", "time-not-a-number"],
)
def test_logs_from_a_runtime_answering_malformed_json_are_a_502(
    api: TestClient, store: Store, answer: bytes
) -> None:
    handler = type("Runtime", (_Runtime,), {"answer": answer})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    reporter = RuntimeReporter(
        store.engine.url.render_as_string(hide_password=False), RuntimeIdentity.new("demo", url, pid=1)
    )
    reporter.register()
    try:
        r = api.get(f"{GW}/logs/dev/user/me")
        assert r.status_code == 502, r.text
        error = r.json()["error"]
        assert error["code"] == "bad_gateway" and url in error["message"]
    finally:
        reporter.close()
        server.shutdown()
        server.server_close()


# --- a semver no later release could pass ------------------------------------------------------------
def test_a_release_with_a_semver_beyond_the_limit_is_refused_and_changes_nothing(api: TestClient) -> None:
    r = api.post(
        f"{GW}/promote",
        json={
            "name": "dev/user/me",
            "target": "staging",
            "semver": "99999999999999999999999.0.0",
            "note": "x",
        },
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "semver"
    assert "at most 999999999" in r.json()["error"]["message"]
    assert api.get(f"{GW}/overview/user/me").json()["environments"]["staging"] is None


# --- the contract: 405 lists the resource's real methods; open routes are declared open ---------------
@pytest.mark.parametrize(
    ("path", "methods"),
    [
        (f"{PREFIX}/gateways", {"GET", "POST"}),
        (f"{GW}", {"GET", "PATCH", "DELETE"}),
        (f"{GW}/functions/dev/user/me", {"GET", "PUT", "DELETE"}),
        (f"{PREFIX}/tokens/1", {"DELETE"}),
        # `{base:path}` also reads these as the canary status of `user/me/abort`: the literal template wins
        (f"{GW}/canary/dev/user/me/abort", {"POST"}),
        (f"{GW}/canary/dev/user/me/promote", {"POST"}),
        (f"{GW}/canary/dev/user/me", {"GET"}),
    ],
)
def test_405_lists_every_method_the_resource_supports(api: TestClient, path: str, methods: set[str]) -> None:
    r = api.options(path)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert set(r.headers["allow"].split(", ")) == methods


def test_the_open_routes_are_declared_open_and_the_rest_need_a_token(api: TestClient) -> None:
    from fnstage.api.authorization import RULES, Public

    document = api.get(f"{PREFIX}/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            rule = RULES[(method.upper(), path.removeprefix(PREFIX))]
            assert (operation.get("security") == []) is isinstance(rule, Public), (method, path)


def test_the_document_declares_the_patterns_the_server_enforces(api: TestClient) -> None:
    document = api.get(f"{PREFIX}/openapi.json").json()
    parameters = {
        p["name"]: p["schema"]
        for p in document["paths"][f"{PREFIX}/gateways/{{gateway}}/functions/{{env}}/{{base}}"]["get"][
            "parameters"
        ]
    }
    assert parameters["gateway"]["pattern"] and parameters["base"]["pattern"]
    assert parameters["env"]["enum"] == ["dev", "staging", "prod"]
    schemas = document["components"]["schemas"]
    assert schemas["GatewayCreate"]["properties"]["id"]["pattern"]
    assert schemas["TokenCreate"]["properties"]["name"]["pattern"]
    assert schemas["Promote"]["properties"]["semver"]["pattern"]
    secret = document["paths"][f"{PREFIX}/gateways/{{gateway}}/secrets/{{env}}/{{key}}"]["put"]
    declared = {p["name"]: p["schema"] for p in secret["parameters"]}
    assert declared["gateway"]["pattern"] and declared["key"]["pattern"]
    assert declared["env"]["enum"] == ["dev", "staging", "prod"]
    change = schemas["ConfigChange"]
    assert change["properties"]["set"]["propertyNames"]["pattern"] and change["anyOf"]


@pytest.mark.parametrize("note", ["", "  ", "a note", " two\nlines\t"])
def test_a_blank_or_plain_optional_note_fits_the_documented_pattern(note: str) -> None:
    assert re.search(OPTIONAL_NOTE_PATTERN, note) and check_note(note, required=False) == (
        note.strip() or None
    )


@pytest.mark.parametrize("note", ["a\rb", "a\x01b", "x\x1fy"])
def test_a_note_with_a_control_character_fails_the_pattern_and_the_server(note: str) -> None:
    assert not re.search(OPTIONAL_NOTE_PATTERN, note)
    with pytest.raises(InvalidInput):
        check_note(note, required=False)


def test_renaming_to_the_same_name_is_a_conflict_and_a_loose_type_is_refused(api: TestClient) -> None:
    r = api.post(f"{GW}/rename", json={"name": "dev/user/me", "new_name": "dev/user/me"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "new_name"
    r = api.patch(GW, json={"allow_dev_to_prod": "yes"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "allow_dev_to_prod"
    assert api.get(GW).json()["allow_dev_to_prod"] is False


# --- a time window that ends before it starts -------------------------------------------------------
@pytest.mark.parametrize("until", [100.0, 99.0])
def test_logs_with_until_not_after_since_are_refused_naming_the_field(api: TestClient, until: float) -> None:
    r = api.get(f"{GW}/logs/dev/user/me", params={"since": 100.0, "until": until})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "until" and "must be later than since" in error["message"]
    assert api.get(f"{GW}/logs/dev/user/me", params={"since": 100.0, "until": 101.0}).status_code == 200
