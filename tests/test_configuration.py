"""Configuration and secrets: the model on both engines (versions, audit, rollback, rotation, the
release check), the supervisor's delivery, the cell's snapshot, the SDK's errors, and the migration of
the functions' own `config`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet
from sqlalchemy import text

from fnstage import secretbox
from fnstage.build.declared_keys import DeclaredKeys, declared_keys
from fnstage.domain.errors import BuildFailed, Conflict, InvalidInput, NotFound
from fnstage.runtime.configuration import CellConfiguration, ConfigDelivery
from fnstage.sdk import MissingSetting, Settings
from fnstage.service import Actor, Services
from fnstage.service.configuration import Change
from fnstage.store import schema
from fnstage.store.credentials import runtime_credentials, runtime_role_of
from fnstage.store.engine import MIGRATIONS, sqlite_url
from fnstage.store.store import Store
from support.functions import hello_files

NEEDS = 'CONFIG = ["DATABASE_URL"]\nSECRETS = ["STRIPE_KEY"]\n\ndef main(ctx):\n    return "ok"\n'


@pytest.fixture
def keyring() -> secretbox.KeyRing:
    return secretbox.KeyRing.parse(Fernet.generate_key().decode(), "test")


@pytest.fixture
def svc(store: Store, keyring: secretbox.KeyRing) -> Services:
    services = Services.create(store, keyring=keyring)
    return services


@pytest.fixture
def gw(svc: Services, actor: Actor) -> str:
    svc.gateways.create(actor, "demo")
    return "demo"


def config_table(store: Store) -> list[Any]:
    with store.read() as tx:
        return list(tx.conn.execute(schema.config_versions.select()))


def test_each_change_is_a_version_with_its_audit_record(svc: Services, actor: Actor, gw: str) -> None:
    cfg = svc.configurations
    v1 = cfg.change(actor, gw, "prod", Change(set_config={"DATABASE_URL": "pg://a"}), note="first")
    v2 = cfg.change(actor, gw, "prod", Change(set_secrets={"STRIPE_KEY": "sk_live_1"}))
    v3 = cfg.change(actor, gw, "prod", Change(set_config={"LIMIT": 5}), function="user/me")
    assert [v1.version, v2.version, v3.version] == [1, 2, 3]
    assert v3.settings == {"": {"DATABASE_URL": "pg://a"}, "user/me": {"LIMIT": 5}}
    assert [v.version for v in cfg.history(gw, "prod")] == [3, 2, 1]
    assert cfg.history(gw, "prod")[2].note == "first" and v1.actor == actor.name
    audit = [a for a in svc.audit.records(gw) if a.action.startswith("config.")]
    assert [a.details["version"] for a in audit] == [3, 2, 1]
    assert "sk_live_1" not in json.dumps([a.details for a in audit])
    # the same value again makes no version; other environments have none
    assert cfg.change(actor, gw, "prod", Change(set_secrets={"STRIPE_KEY": "sk_live_1"})).version == 3
    assert cfg.current(gw, "dev") is None


def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    svc: Services, actor: Actor, gw: str, store: Store
) -> None:
    cfg = svc.configurations
    cfg.change(actor, gw, "dev", Change(set_config={"A": "1"}))
    before = config_table(store)
    cases: list[tuple[Any, str]] = [
        (lambda: cfg.change(actor, gw, "dev", Change(set_config={"1BAD": "x"})), "config"),
        (lambda: cfg.change(actor, gw, "qa", Change(set_config={"A": "x"})), "env"),
        (lambda: cfg.change(actor, gw, "dev", Change(unset_config=["NOPE"])), "unset"),
        (lambda: cfg.change(actor, gw, "dev", Change(set_secrets={"K": ""})), "value"),
        (lambda: cfg.change(actor, gw, "dev", Change(set_config={"A": "x" * 20000})), "config"),
        (lambda: cfg.change(actor, gw, "dev", Change()), "set"),
        (lambda: cfg.change(actor, gw, "dev", Change(set_config={"A": "2"}), function="../x"), "function"),
        (lambda: cfg.rollback(actor, gw, "dev", 7), "to"),
        (lambda: cfg.rollback(actor, gw, "dev", 1), "to"),  # the current version already
    ]
    for call, field in cases:
        with pytest.raises((InvalidInput, NotFound, Conflict)) as caught:
            call()
        assert caught.value.field == field, (field, caught.value.message)
    assert config_table(store) == before


def test_secrets_are_stored_encrypted_and_rollback_and_rotation_keep_them_readable(
    svc: Services, actor: Actor, gw: str, store: Store, keyring: secretbox.KeyRing
) -> None:
    cfg = svc.configurations
    cfg.change(actor, gw, "prod", Change(set_secrets={"STRIPE_KEY": "sk_live_old"}))
    cfg.change(actor, gw, "prod", Change(set_secrets={"STRIPE_KEY": "sk_live_new"}))
    stored = json.dumps([list(map(str, row)) for row in config_table(store)])
    assert "sk_live_old" not in stored and "sk_live_new" not in stored
    assert cfg.rotate_key(actor, gw) == 2  # every version's token, re-encrypted
    back = cfg.rollback(actor, gw, "prod", 1, "the new key broke payments")
    assert back.kind == "rollback" and back.source_version == 1
    assert back.changes == [{"op": "set", "type": "secret", "key": "STRIPE_KEY", "function": None}]
    delivered = deliver(store, keyring)
    assert delivered[(gw, "prod")]["secrets"] == {"": {"STRIPE_KEY": "sk_live_old"}}
    # a server with another key cannot open them, and says so (the values stay unread)
    other = secretbox.KeyRing.parse(Fernet.generate_key().decode(), "other")
    refused = deliver(store, other)[(gw, "prod")]
    assert refused["secrets"] == {} and "does not open" in refused["secrets_error"]
    with pytest.raises(Conflict, match="does not open"):
        Services.create(store, keyring=other).configurations.change(
            actor, gw, "prod", Change(set_secrets={"X": "y"})
        )


def test_a_server_without_a_key_refuses_secrets_but_keeps_plain_settings(store: Store, actor: Actor) -> None:
    svc = Services.create(store)
    svc.gateways.create(actor, "demo")
    svc.configurations.change(actor, "demo", "dev", Change(set_config={"A": "1"}))
    with pytest.raises(Conflict, match="no secret key"):
        svc.configurations.change(actor, "demo", "dev", Change(set_secrets={"K": "v"}))


def deliver(store: Store, keyring: Any, gateway: str | None = None, env: str | None = None) -> dict[Any, Any]:
    got: dict[Any, Any] = {}
    url = store.engine.url.render_as_string(hide_password=False)
    delivery = ConfigDelivery(
        url, gateway, env, keyring, lambda slot, payload: got.__setitem__(slot, payload)
    )
    try:
        delivery.refresh(None)
    finally:
        delivery.close()
    return got


def test_delivery_reads_only_the_runtimes_gateway_and_environment(
    svc: Services, actor: Actor, gw: str, store: Store, keyring: secretbox.KeyRing
) -> None:
    svc.gateways.create(actor, "other")
    for gateway in (gw, "other"):
        for env in ("dev", "prod"):
            svc.configurations.change(actor, gateway, env, Change(set_secrets={"K": f"{gateway}-{env}"}))
    assert set(deliver(store, keyring)) == {(gw, "dev"), (gw, "prod"), ("other", "dev"), ("other", "prod")}
    only = deliver(store, keyring, gw, "prod")
    assert list(only) == [(gw, "prod")] and only[(gw, "prod")]["secrets"] == {"": {"K": "demo-prod"}}


def test_a_release_missing_a_declared_key_is_refused_and_promotion_copies_no_configuration(
    svc: Services, actor: Actor, gw: str
) -> None:
    cfg = svc.configurations
    cfg.change(actor, gw, "dev", Change(set_config={"DATABASE_URL": "pg://dev"}))
    cfg.change(actor, gw, "dev", Change(set_secrets={"STRIPE_KEY": "sk_dev"}))
    svc.deployments.save(actor, gw, "dev/user/me", {"index.py": NEEDS})
    with pytest.raises(Conflict) as caught:
        svc.deployments.promote(actor, gw, "dev/user/me", "staging", "1.0.0-rc.1", "qa")
    assert caught.value.details["missing"] == ["config DATABASE_URL", "secret STRIPE_KEY"]
    cfg.change(actor, gw, "staging", Change(set_config={"DATABASE_URL": "pg://staging"}))
    with pytest.raises(Conflict, match="secret STRIPE_KEY"):
        svc.deployments.promote(actor, gw, "dev/user/me", "staging", "1.0.0-rc.1", "qa")
    # a function's own override counts for that function
    cfg.change(actor, gw, "staging", Change(set_secrets={"STRIPE_KEY": "sk_st"}), function="user/me")
    assert cfg.required(gw, "prod", "user/me", "dev", None) == {
        "env": "prod",
        "config": [{"key": "DATABASE_URL", "present": False}],
        "secrets": [{"key": "STRIPE_KEY", "present": False}],
        "missing": ["config DATABASE_URL", "secret STRIPE_KEY"],
    }
    svc.deployments.promote(actor, gw, "dev/user/me", "staging", "1.0.0-rc.1", "qa")
    assert cfg.required(gw, "staging", "user/me", "dev", None)["missing"] == []
    staging = cfg.current(gw, "staging")
    assert staging is not None and staging.version == 2  # the promote made no configuration version
    assert staging.settings == {"": {"DATABASE_URL": "pg://staging"}}


def test_a_save_with_the_old_per_function_config_is_refused_pointing_to_config_set(
    svc: Services, actor: Actor, gw: str
) -> None:
    with pytest.raises(InvalidInput, match="fnstage config set dev") as caught:
        svc.deployments.save(actor, gw, "dev/user/me", hello_files(), config={"API_KEY": "s3cret"})
    assert caught.value.field == "config"


def test_declared_keys_are_read_from_the_entrypoint_and_a_bad_declaration_fails_the_build(
    svc: Services, actor: Actor, gw: str
) -> None:
    assert declared_keys(NEEDS) == DeclaredKeys(("DATABASE_URL",), ("STRIPE_KEY",))
    assert declared_keys("def main(ctx):\n    CONFIG = ['X']\n") == DeclaredKeys()  # not top level
    with pytest.raises(BuildFailed, match="CONFIG must be a list"):
        svc.deployments.save(actor, gw, "dev/a", {"index.py": "CONFIG = 'X'\ndef main(ctx):\n    pass\n"})
    with pytest.raises(BuildFailed, match="not a key name"):
        svc.deployments.save(
            actor, gw, "dev/a", {"index.py": "SECRETS = ['a-b']\ndef main(ctx):\n    pass\n"}
        )


def test_the_sdk_names_the_missing_key_and_environment_and_never_shows_a_secret() -> None:
    secrets = Settings({"STRIPE_KEY": "sk_live_x"}, kind="secret", env="prod")
    with pytest.raises(KeyError) as caught:
        secrets["DATABASE_URL"]
    assert isinstance(caught.value, MissingSetting)
    assert str(caught.value) == (
        "secret 'DATABASE_URL' is not set in prod: `fnstage secret set prod DATABASE_URL`"
    )
    assert "sk_live_x" not in repr(secrets) and "STRIPE_KEY" in repr(secrets)
    assert secrets.get("NOPE") is None and dict(secrets) == {"STRIPE_KEY": "sk_live_x"}


def test_a_cell_keeps_its_newest_configuration_and_a_request_keeps_its_snapshot() -> None:
    cell = CellConfiguration("prod")
    payload = {
        "env": "prod",
        "version": 2,
        "seq": 2,
        "settings": {"": {"A": 1}, "user/me": {"A": 2}},
        "secrets": {},
    }
    assert cell.apply(payload)
    snapshot = cell.current.for_function("user/me")
    assert snapshot[0]["A"] == 2 and cell.current.for_function("other")[0]["A"] == 1
    assert not cell.apply({**payload, "seq": 1, "settings": {"": {"A": 0}}})  # a late resend
    # delivery order, not the version: a gateway deleted and made again starts at version 1
    assert cell.apply({**payload, "version": 1, "seq": 3, "settings": {"": {"A": 3}}})
    assert snapshot[0]["A"] == 2  # what a request in flight took stays as it was
    assert cell.current.for_function("user/me")[0]["A"] == 3


def test_the_key_file_is_made_once_with_mode_0600_and_a_bad_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "secret-key"
    assert secretbox.create_key_file(path) and not secretbox.create_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    ring = secretbox.KeyRing.from_file(path)
    assert ring.unwrap(ring.wrap(b"data")) == b"data"
    with pytest.raises(secretbox.SecretKeyError, match="key 2 in x is not a Fernet key"):
        secretbox.KeyRing.parse(f"{Fernet.generate_key().decode()},nope", "x")


def test_the_functions_own_config_moves_into_its_environment(tmp_path: Path) -> None:
    """A database at 0010 (before configuration) with a function whose own `config` is set: the
    migration moves it into its environment's configuration and empties the column."""
    url = sqlite_url(tmp_path)
    store = Store.open(url, run_migrations=False)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    stamp = "2026-11-30 12:00:00"
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0010")
        conn.execute(
            text(
                "INSERT INTO gateways (id, allow_dev_to_prod, dependencies, publish_seq, created_at, created_by)"
                " VALUES ('demo', 0, '[]', 0, :t, 'ada')"
            ),
            {"t": stamp},
        )
        conn.execute(
            text(
                "INSERT INTO functions (gateway_id, env, base, entrypoint, files, bundle_hash, compiled,"
                " version, semver, methods, description, tags, config, timeout_s, created_at, created_by,"
                " updated_at, updated_by) VALUES ('demo', :env, 'user/me', 'index.py', '{}', 'h', x'00', 1,"
                " '0.1.0', '[]', '', '[]', :config, 30, :t, 'ada', :t, 'ada')"
            ),
            [
                {"env": "dev", "config": json.dumps({"API_KEY": "s3cret"}), "t": stamp},
                {"env": "staging", "config": "{}", "t": stamp},
            ],
        )
    store.close()
    store = Store.open(url)  # migrates to the head
    svc = Services.create(store)
    moved = svc.configurations.current("demo", "dev")
    assert moved is not None and moved.kind == "import" and moved.version == 1
    assert moved.settings == {"user/me": {"API_KEY": "s3cret"}}
    assert svc.configurations.current("demo", "staging") is None
    with store.read() as tx:
        assert {row[0] for row in tx.conn.execute(text("SELECT config FROM functions"))} == {"{}"}
    store.close()


@pytest.mark.postgres
@pytest.mark.engine("postgres")
def test_a_runtime_role_reads_only_its_own_gateways_configuration(
    svc: Services, actor: Actor, gw: str, store: Store, keyring: secretbox.KeyRing
) -> None:
    svc.gateways.create(actor, "beta-2")
    for gateway in (gw, "beta-2"):
        svc.configurations.change(actor, gateway, "prod", Change(set_secrets={"K": gateway}))
    url = runtime_credentials(store.engine, gw)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("select gateway_id from config_versions").fetchall()
            assert rows == [(gw,)]
            assert conn.execute("select gateway_id from secret_keys").fetchall() == [(gw,)]
        got: dict[Any, Any] = {}
        delivery = ConfigDelivery(url, gw, None, keyring, lambda s, p: got.__setitem__(s, p))
        delivery.refresh(None)
        delivery.close()
        assert got[(gw, "prod")]["secrets"] == {"": {"K": gw}}
    finally:
        with store.engine.connect() as conn, conn.begin():
            role = runtime_role_of(conn, gw)
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))


def test_the_server_key_is_never_passed_to_function_code_even_when_named() -> None:
    from fnstage.runtime.zygote import passed_to_cells

    environ = {"FNSTAGE_CELL_ENV": "REGION, FNSTAGE_SECRET_KEY,FNSTAGE_SECRET_KEY_FILE,FNSTAGE_DATABASE_URL"}
    assert passed_to_cells(environ) == ["REGION"]
