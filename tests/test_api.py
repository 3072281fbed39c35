"""The HTTP API in-process: authentication, the JSON error shape, and the walk through the routes."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from fnstage.api.app import create_app
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.service.scheduler import Scheduler
from fnstage.store.store import Store
from support.functions import hello_files


@pytest.fixture
def client(store: Store) -> TestClient:
    token = bootstrap_admin(store)
    assert token is not None
    client = TestClient(create_app(Services.create(store)))
    client.headers["Authorization"] = f"Bearer {token}"
    client.post("/api/v1/gateways", json={"id": "demo"}).raise_for_status()
    return client


def error(response) -> dict:  # type annotations of httpx responses add nothing here
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


def test_health_needs_no_token_and_the_rest_does(store: Store) -> None:
    plain = TestClient(create_app(Services.create(store)))
    assert plain.get("/api/v1/health").json()["status"] == "ok"
    r = plain.get("/api/v1/gateways")
    assert r.status_code == 401 and error(r)["code"] == "unauthorized"
    r = plain.get("/api/v1/gateways", headers={"Authorization": "Bearer fns_wrong"})
    assert r.status_code == 401 and error(r)["message"] == "unknown token"


def test_health_reports_the_schedulers_passes(store: Store) -> None:
    """An operator (and a test waiting for "nothing ran twice") sees that the scheduler is alive."""
    assert TestClient(create_app(Services.create(store))).get("/api/v1/health").json()["scheduler"] is None
    scheduler = Scheduler(store)
    plain = TestClient(create_app(Services.create(store), scheduler=scheduler))
    assert plain.get("/api/v1/health").json()["scheduler"] == {
        "passes": 0,
        "failed_passes": 0,
        "last_pass_at": None,
    }
    scheduler.tick()
    health = plain.get("/api/v1/health").json()["scheduler"]
    assert health["passes"] == 1 and health["failed_passes"] == 0
    assert datetime.fromisoformat(health["last_pass_at"]) == scheduler.health().last_pass_at


def test_bootstrap_happens_once(store: Store) -> None:
    assert bootstrap_admin(store) is not None
    assert bootstrap_admin(store) is None


def test_a_save_takes_its_note_as_note_and_still_as_changelog(client: TestClient) -> None:
    """Issue 18 item 12: one word for the release note; `changelog` stays accepted as its old name."""
    url = "/api/v1/gateways/demo/functions/dev/user/me"
    client.put(url, json={"files": hello_files()})
    assert client.put(url, json={"files": hello_files("Hi"), "note": "say hi"}).status_code == 200
    assert client.put(url, json={"files": hello_files("Yo"), "changelog": "say yo"}).status_code == 200
    r = client.put(url, json={"files": hello_files("Hey"), "note": "a", "changelog": "b"})
    assert r.status_code == 422 and error(r)["field"] == "note"
    entries = client.get("/api/v1/gateways/demo/history/dev/user/me").json()["entries"]
    assert [(e["note"], e["changelog"]) for e in entries[:2]] == [("say yo", "say yo"), ("say hi", "say hi")]


def test_walk_over_http(client: TestClient) -> None:
    base = "/api/v1/gateways/demo"
    r = client.put(f"{base}/functions/dev/user/me", json={"files": hello_files()})
    assert r.status_code == 201 and r.json()["function"]["version"] == 1
    r = client.put(
        f"{base}/functions/dev/user/me",
        json={"files": hello_files("Hi"), "changelog": "hi", "expected_version": 1},
    )
    assert r.status_code == 200 and r.json()["function"]["version"] == 2 and r.json()["changed"]
    r = client.put(f"{base}/functions/dev/user/me", json={"files": hello_files("Hi")})
    assert r.json()["changed"] is False
    r = client.get(f"{base}/functions/dev/user/me", params={"files": "true"})
    assert r.json()["files"]["utils.py"].startswith("def greet") and len(r.json()["file_hashes"]) == 2
    r = client.post(
        f"{base}/promote",
        json={"name": "dev/user/me", "target": "staging", "semver": "1.0.0-rc.1", "note": "QA"},
    )
    assert r.status_code == 200 and r.json()["history"]["kind"] == "promote"
    r = client.post(
        f"{base}/release",
        json={"base": "user/me", "source_env": "staging", "target": "prod", "semver": "1.0.0", "note": "go"},
    )
    assert r.json()["function"]["name"] == "prod/user/me"
    r = client.post(
        f"{base}/rollback",
        json={"name": "prod/user/me", "to_semver": "1.0.0", "semver": "1.0.1", "note": "again"},
    )
    assert r.json()["function"]["version"] == 2
    r = client.get(f"{base}/history/prod/user/me", params={"limit": 1})
    assert [e["semver"] for e in r.json()["entries"]] == ["1.0.1"] and r.json()["next_before"]
    r = client.get(f"{base}/history/prod/user/me", params={"before": r.json()["next_before"]})
    assert [e["semver"] for e in r.json()["entries"]] == ["1.0.0"]
    entries_id = r.json()["entries"][0]["id"]
    r = client.get(f"{base}/diff", params={"a": "dev/user/me@v1", "b": "dev/user/me"})
    assert {f["path"]: f["status"] for f in r.json()["files"]} == {
        "index.py": "unchanged",
        "utils.py": "modified",
    }
    r = client.get(f"{base}/release-options/user/me", params={"source_env": "staging", "semver": "1.0.1"})
    options = r.json()
    assert options["source"] == {"env": "staging", "history_id": None, "semver": "1.0.0-rc.1"}
    assert options["default_target"] == "prod"
    targets = {t["env"]: t for t in options["targets"]}
    assert "forward only" in targets["dev"]["refusal"] and targets["dev"]["suggested_semver"] is None
    assert targets["prod"]["current_semver"] == "1.0.1" and targets["prod"]["suggested_semver"] == "1.0.2"
    assert "not greater than prod's current 1.0.1" in targets["prod"]["semver_problem"]
    r = client.get(f"{base}/release-options/user/me", params={"source_history_id": entries_id})
    assert {t["env"]: t["is_rollback"] for t in r.json()["targets"]}["prod"] is True
    r = client.get(f"{base}/release-options/user/me")
    assert r.status_code == 422 and error(r)["field"] == "source_env"
    r = client.get(f"{base}/release-options/user/nobody", params={"source_env": "dev"})
    assert r.status_code == 404 and error(r)["field"] == "source_env"
    r = client.get(f"{base}/overview/user/me")
    envs = r.json()["environments"]
    assert envs["prod"]["note"] == "again" and envs["staging"]["state"] == "QA in progress"
    r = client.post(f"{base}/rename", json={"name": "dev/user/me", "new_name": "dev/user/profile"})
    assert r.json()["function"]["name"] == "dev/user/profile"
    r = client.delete(f"{base}/functions/dev/user/profile")
    assert r.json()["history"]["kind"] == "delete"
    assert client.get(f"{base}/functions", params={"env": "dev"}).json() == {"functions": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field"),
    [
        (
            "put",
            "/functions/dev/user/me",
            {"files": {"index.py": "def main(:\n"}},
            422,
            "build_failed",
            "files",
        ),
        (
            "put",
            "/functions/dev/user/me",
            {"files": {"../x.py": "def main(c): pass\n"}},
            422,
            "invalid",
            "files",
        ),
        ("put", "/functions/prod/user/me", {"files": hello_files()}, 409, "policy", "name"),
        ("put", "/functions/qa/user/me", {"files": hello_files()}, 422, "invalid", "name"),
        (
            "put",
            "/functions/dev/user/me",
            {"files": hello_files(), "semver": "1.0"},
            422,
            "invalid",
            "semver",
        ),
        (
            "put",
            "/functions/dev/user/me",
            {"files": hello_files(), "surprise": 1},
            422,
            "invalid",
            "surprise",
        ),
        (
            "put",
            "/functions/dev/user/me",
            {"files": hello_files(), "expected_version": 3},
            409,
            "stale_version",
            "expected_version",
        ),
        (
            "put",
            "/functions/dev/user/me",
            {"files": hello_files(), "methods": ["FETCH"]},
            422,
            "invalid",
            "methods",
        ),
        (
            "put",
            "/functions/dev/user/me",
            {"files": hello_files(), "timeout_s": 0},
            422,
            "invalid",
            "timeout_s",
        ),
        (
            "put",
            "/functions/dev/user/me",
            {"files": hello_files(), "timeout_s": 901},
            422,
            "invalid",
            "timeout_s",
        ),
        (
            "post",
            "/promote",
            {"name": "dev/user/none", "target": "staging", "semver": "1.0.0", "note": "x"},
            404,
            "not_found",
            "source_env",
        ),
        ("get", "/history-entries/999", None, 404, "not_found", "id"),
    ],
)
def test_refusals_name_the_field(
    client: TestClient, method: str, path: str, body, status: int, code: str, field: str
) -> None:
    r = client.request(method.upper(), f"/api/v1/gateways/demo{path}", json=body)
    assert r.status_code == status, r.text
    err = error(r)
    assert (err["code"], err["field"]) == (code, field) and err["message"]


def test_stale_save_over_http_reports_the_current_version(client: TestClient) -> None:
    client.put("/api/v1/gateways/demo/functions/dev/user/me", json={"files": hello_files()})
    r = client.put(
        "/api/v1/gateways/demo/functions/dev/user/me", json={"files": hello_files("X"), "expected_version": 0}
    )
    assert r.status_code == 409 and error(r)["details"] == {"current_version": 1}


def test_unknown_routes_and_gateways_answer_in_the_error_shape(client: TestClient) -> None:
    assert error(client.get("/api/v1/nothing"))["code"] == "not_found"
    r = client.get("/api/v1/gateways/nope/functions")
    assert r.status_code == 404 and error(r)["field"] == "gateway"
    r = client.post("/api/v1/gateways", json={"id": "demo"})
    assert r.status_code == 409
    r = client.post("/api/v1/gateways", json={"id": "Bad_Id"})
    assert r.status_code == 422 and error(r)["field"] == "id"


def test_openapi_document_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert "/api/v1/gateways/{gateway}/promote" in paths and "/api/v1/gateways/{gateway}/diff" in paths


def test_the_function_list_carries_each_functions_runtime_state_when_asked(client: TestClient) -> None:
    base = "/api/v1/gateways/demo"
    client.put(f"{base}/functions/dev/user/me", json={"files": hello_files()}).raise_for_status()
    plain = client.get(f"{base}/functions").json()["functions"]
    assert [f["name"] for f in plain] == ["dev/user/me"] and "runtime" not in plain[0]
    listed = client.get(f"{base}/functions", params={"runtime": "true"}).json()["functions"]
    assert [f["name"] for f in listed] == ["dev/user/me"]
    assert listed[0]["runtime"] == {
        "live": 0,
        "failed": 0,
        "pending": 0,
        "held": 0,
        "silent": 0,
        "active": 0,
        "requests": 0,
        "errors": 0,
        "summary": "no runtime",
    }
    r = client.get(f"{base}/functions", params={"runtime": "perhaps"})
    assert r.status_code == 422 and error(r)["field"] == "runtime"
