"""The triggers API in-process: add, list, pause, resume, runs, remove, and every bad input's 4xx."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from fnstage.api.app import create_app
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.service.scheduler import Scheduler
from fnstage.store.store import Store
from support.functions import hello_files

NOW = datetime(2030, 1, 1, 10, 59, 30, tzinfo=UTC)
T = "/api/v1/gateways/demo/triggers"


@pytest.fixture
def client(store: Store) -> TestClient:
    token = bootstrap_admin(store)
    client = TestClient(create_app(Services.create(store, clock=lambda: NOW)))
    client.headers["Authorization"] = f"Bearer {token}"
    client.post("/api/v1/gateways", json={"id": "demo"}).raise_for_status()
    client.put(
        "/api/v1/gateways/demo/functions/dev/reports/daily", json={"files": hello_files()}
    ).raise_for_status()
    return client


def test_the_life_of_a_trigger_over_http(client: TestClient, store: Store) -> None:
    body = {
        "function": "dev/reports/daily",
        "cron": "0  *  * * *",
        "timezone": "Europe/Berlin",
        "payload": {"a": 1},
    }
    added = client.post(T, json=body)
    assert added.status_code == 201, added.text
    trigger = added.json()
    assert trigger["name"] == "reports-daily" and trigger["cron"] == "0 * * * *"
    assert trigger["next_tick"] == "2030-01-01T11:00:00+00:00" and trigger["paused"] is False
    assert [
        t["name"] for t in client.get(T, params={"env": "dev", "base": "reports/daily"}).json()["triggers"]
    ] == ["reports-daily"]
    assert client.get(T, params={"env": "prod"}).json()["triggers"] == []
    assert client.get(f"{T}/dev/reports-daily").json()["payload"] == {"a": 1}

    paused = client.post(f"{T}/dev/reports-daily/pause").json()
    assert paused["paused"] is True and paused["next_tick"] is None
    assert client.post(f"{T}/dev/reports-daily/resume").json()["next_tick"] == "2030-01-01T11:00:00+00:00"

    later = datetime(2030, 1, 1, 11, 0, 1, tzinfo=UTC)
    (claimed,) = Scheduler(store, lambda: later).tick()
    runs = client.get(f"{T}/dev/reports-daily/runs").json()
    assert runs["trigger"]["name"] == "reports-daily"
    (run,) = runs["runs"]
    assert run["tick"] == "2030-01-01T11:00:00+00:00" and run["status"] == "running"
    assert run["request_id"] == claimed.request_id

    audit = client.get("/api/v1/gateways/demo/audit").json()
    assert [r["action"] for r in audit["records"]][:3] == ["trigger.resume", "trigger.pause", "trigger.add"]
    assert client.delete(f"{T}/dev/reports-daily").json()["removed"]["name"] == "reports-daily"
    assert client.get(f"{T}/dev/reports-daily").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"function": "dev/reports/daily", "cron": "61 * * * *"}, 422, "cron"),
        ({"function": "dev/reports/daily", "cron": "* * * * *", "timezone": "Moon/Base"}, 422, "timezone"),
        ({"function": "dev/reports/daily", "cron": "* * * * *", "name": "Not OK"}, 422, "name"),
        ({"function": "dev/reports/none", "cron": "* * * * *"}, 404, "function"),
        ({"function": "reports/daily", "cron": "* * * * *"}, 422, "function"),
        ({"function": "dev/reports/daily"}, 422, "cron"),
        ({"function": "dev/reports/daily", "cron": "* * * * *", "extra": 1}, 422, "extra"),
    ],
)
def test_a_bad_trigger_is_refused_naming_the_field_and_nothing_is_added(
    client: TestClient, body: dict, status: int, field: str
) -> None:
    answer = client.post(T, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field
    assert client.get(T).json()["triggers"] == []


def test_a_second_trigger_with_the_same_name_is_a_conflict(client: TestClient) -> None:
    body = {"function": "dev/reports/daily", "cron": "* * * * *"}
    assert client.post(T, json=body).status_code == 201
    again = client.post(T, json=body)
    assert again.status_code == 409 and again.json()["error"]["field"] == "name"
    assert client.post(T, json={**body, "name": "second"}).status_code == 201


def test_unknown_triggers_and_environments_are_404_and_422(client: TestClient) -> None:
    assert client.get(f"{T}/dev/nope/runs").json()["error"]["field"] == "name"
    assert client.post(f"{T}/qa/nope/pause").status_code == 422
    assert client.get(f"{T}/dev/nope/runs", params={"limit": 0}).status_code == 422
