"""Tokens and members: revoked or expired tokens are refused at once, membership rules, the audit log.

On every store engine (the `store` fixture): nothing here depends on SQLite or PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from fnstage.api.app import PREFIX, create_app
from fnstage.domain.errors import Conflict, InvalidInput, NotFound, Unauthorized
from fnstage.service import Actor, Services
from fnstage.service.identity import authenticate, bootstrap_admin, hash_token, note_use
from fnstage.store.store import Store
from support.clock import Clock


@pytest.fixture
def api(store: Store) -> TestClient:
    token = bootstrap_admin(store)
    client = TestClient(create_app(Services.create(store)))
    client.headers["Authorization"] = f"Bearer {token}"
    client.post(f"{PREFIX}/gateways", json={"id": "demo"}).raise_for_status()
    return client


def test_a_revoked_token_is_refused_at_once(api: TestClient) -> None:
    made = api.post(f"{PREFIX}/tokens", json={"name": "laptop"}).json()
    mine = {"Authorization": f"Bearer {made['secret']}"}
    assert api.get(f"{PREFIX}/me", headers=mine).status_code == 200
    listed = api.get(f"{PREFIX}/tokens").json()["tokens"]
    assert [t["name"] for t in listed] == ["bootstrap", "laptop"]
    assert all("secret" not in t and "token_hash" not in t for t in listed)
    assert api.delete(f"{PREFIX}/tokens/{made['id']}").json()["revoked_at"]
    r = api.get(f"{PREFIX}/me", headers=mine)
    assert r.status_code == 401 and r.json()["error"]["message"] == "this token was revoked"


def test_a_token_shows_when_it_was_last_used(api: TestClient) -> None:
    made = api.post(f"{PREFIX}/tokens", json={"name": "laptop"}).json()
    assert made["last_used_at"] is None

    def listed() -> dict[str, str | None]:
        return {t["name"]: t["last_used_at"] for t in api.get(f"{PREFIX}/tokens").json()["tokens"]}

    assert listed()["laptop"] is None and listed()["bootstrap"] is not None  # the admin's is in use
    before = datetime.now(UTC)
    mine = {"Authorization": f"Bearer {made['secret']}"}
    assert api.get(f"{PREFIX}/gateways/demo", headers=mine).status_code == 200  # a gateway route too
    used = listed()["laptop"]
    assert used is not None and datetime.fromisoformat(used) >= before - timedelta(seconds=1)


def test_a_token_s_last_use_is_written_at_most_once_a_minute(store: Store) -> None:
    token = bootstrap_admin(store)
    with store.read() as tx:
        record = tx.find_token(hash_token(token or ""))
    assert record is not None and record.last_used_at is None
    first = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert note_use(store, record, first)
    with store.read() as tx:
        record = tx.find_token(hash_token(token or ""))
    assert record is not None and record.last_used_at == first
    assert not note_use(store, record, first + timedelta(seconds=59))  # no write for every request
    assert note_use(store, record, first + timedelta(seconds=60))


def test_an_expired_token_is_refused_at_once(store: Store) -> None:
    clock = Clock(datetime.now(UTC))
    api = TestClient(create_app(Services.create(store, clock=clock)))
    api.headers["Authorization"] = f"Bearer {bootstrap_admin(store)}"
    made = api.post(f"{PREFIX}/tokens", json={"name": "short", "expires_in_seconds": 60}).json()
    assert datetime.fromisoformat(made["expires_at"]) == clock() + timedelta(seconds=60)
    mine = {"Authorization": f"Bearer {made['secret']}"}
    clock.move(seconds=59.9)
    assert api.get(f"{PREFIX}/me", headers=mine).status_code == 200
    clock.move(seconds=0.1)  # its expiry: refused from that instant on
    r = api.get(f"{PREFIX}/me", headers=mine)
    assert r.status_code == 401 and r.json()["error"]["message"] == "this token has expired"


def test_tokens_are_stored_as_hashes_and_belong_to_their_user(store: Store, services: Services) -> None:
    admin_token = bootstrap_admin(store)
    assert admin_token is not None
    admin = authenticate(store, admin_token)
    user, first = services.accounts.create_user(admin, "bob")
    bob = authenticate(store, first.secret)
    assert bob == Actor(user.id, "bob", False)
    with store.read() as tx:
        assert tx.find_token(hash_token(first.secret)) is not None
        assert tx.find_token(first.secret) is None  # the secret itself is nowhere
    with pytest.raises(NotFound):  # bob cannot revoke the admin's token, nor learn it exists
        services.accounts.revoke_token(bob, 1)
    services.accounts.revoke_token(admin, first.record.id)  # an admin may revoke anyone's
    with pytest.raises(Unauthorized):
        authenticate(store, first.secret)


@pytest.mark.parametrize(
    "name", ["", "Bob", "bob\n", "bo b", "b" * 65, "bøb", "\uff42ob", "../bob", "bob\x00"]
)
def test_user_names_are_plain_ascii(services: Services, actor: Actor, name: str) -> None:
    with pytest.raises(InvalidInput):
        services.accounts.create_user(actor, name)
    assert [u.name for u in services.accounts.users()] == ["ada"]


@pytest.mark.parametrize("seconds", [0, -1, 3651 * 86400])
def test_token_lifetimes_are_bounded(services: Services, actor: Actor, seconds: int) -> None:
    with pytest.raises(InvalidInput):
        services.accounts.create_token(actor, "x", seconds)
    assert services.accounts.tokens(actor) == []


def test_the_last_owner_stays_and_changes_are_audited(services: Services, actor: Actor, gateway: str) -> None:
    user, _ = services.accounts.create_user(actor, "bob")
    assert [(m.user, m.role) for m in services.members.list(gateway)] == [("ada", "owner")]
    with pytest.raises(Conflict):
        services.members.remove(actor, gateway, "ada")
    with pytest.raises(Conflict):
        services.members.set(actor, gateway, "ada", "viewer")
    services.members.set(actor, gateway, "bob", "developer")
    services.members.set(actor, gateway, "bob", "owner")
    services.members.set(actor, gateway, "ada", "viewer")  # bob owns it now
    with pytest.raises(Conflict):
        services.members.remove(actor, gateway, "bob")
    with pytest.raises(NotFound):
        services.members.set(actor, gateway, "nobody", "viewer")
    bob = Actor(user.id, "bob", False)
    services.gateways.update(gateway, history_limit=5, actor=bob)
    actions = [(a.actor, a.action, a.target) for a in reversed(services.audit.records(gateway))]
    assert actions == [
        ("ada", "gateway.create", gateway),
        ("ada", "member.add", "bob"),
        ("ada", "member.role", "bob"),
        ("ada", "member.role", "ada"),
        ("bob", "gateway.update", gateway),
    ]
    assert [a.action for a in services.audit.records(None)] == ["user.create"]


def test_a_deleted_gateway_keeps_its_audit_trail(services: Services, actor: Actor, gateway: str) -> None:
    services.gateways.delete(actor, gateway)
    assert services.gateways.all() == [] and services.members.list(gateway) == []
    assert services.audit.records(gateway)[0].action == "gateway.delete"
