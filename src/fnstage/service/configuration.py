"""Configuration and secrets per (gateway, environment): set, unset, list, history, rollback, rotate.

Every change is ONE write transaction: the gateway's row is locked, the new version (the whole state
after the change: who, when, a note, which keys changed) is inserted with an audit record, and the
change feed announces the version (`store.configuration.announce`: the names of nothing, the values
of nothing) so runtimes deliver it to their cell without a restart. A secret's value is encrypted
before it reaches the store (`fnstage.secretbox`) and is never returned: callers see its key, who set
it, when, and a short keyed fingerprint. Code moves between environments; configuration never does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fnstage import secretbox
from fnstage.build.declared_keys import DeclaredKeys, declared_keys
from fnstage.domain.errors import Conflict, InvalidInput, NotFound
from fnstage.domain.keys import check_key
from fnstage.domain.names import check_base, check_environment
from fnstage.domain.policy import check_note
from fnstage.service.identity import Actor
from fnstage.store import access
from fnstage.store import configuration as sql
from fnstage.store.configuration import ConfigVersion
from fnstage.store.store import Store, Tx, now

MAX_VALUE_BYTES = 16 * 1024  # one value, as JSON (a config value) or UTF-8 (a secret)
MAX_TOTAL_BYTES = 256 * 1024  # an environment's settings, as JSON
MAX_HISTORY_PAGE = 200
NO_KEY = (
    "this server has no secret key, so it cannot store secrets: set FNSTAGE_SECRET_KEY, or give the "
    "key file (`fnstage up` makes one in its data folder; `--secret-key-file` elsewhere)"
)


@dataclass
class Change:
    """What one request changes in one scope (an environment, or one function's overrides)."""

    set_config: dict[str, Any] = field(default_factory=dict)
    unset_config: list[str] = field(default_factory=list)
    set_secrets: dict[str, str] = field(default_factory=dict)
    unset_secrets: list[str] = field(default_factory=list)


class Configurations:
    def __init__(self, store: Store, keyring: secretbox.KeyRing | None = None) -> None:
        self.store = store
        self.keyring = keyring

    # reads ----------------------------------------------------------------------------------------
    def current(self, gateway: str, env: str) -> ConfigVersion | None:
        check_environment(env, field="env")
        with self.store.read() as tx:
            _gateway(tx, gateway)
            return sql.current(tx, gateway, env)

    def history(self, gateway: str, env: str, limit: int = 50) -> list[ConfigVersion]:
        check_environment(env, field="env")
        with self.store.read() as tx:
            _gateway(tx, gateway)
            return sql.list_versions(tx, gateway, env, max(1, min(limit, MAX_HISTORY_PAGE)))

    # changes --------------------------------------------------------------------------------------
    def change(
        self,
        actor: Actor,
        gateway: str,
        env: str,
        change: Change,
        *,
        function: str | None = None,
        note: str | None = None,
    ) -> ConfigVersion:
        check_environment(env, field="env")
        scope = check_base(function, field="function") if function else ""
        note = check_note(note, required=False)
        _check_change(change)
        stamp = now()
        with self.store.write() as tx:
            _lock(tx, gateway)
            before = sql.current(tx, gateway, env)
            settings = _copy(before.settings if before else {})
            secrets = _copy(before.secrets if before else {})
            changes: list[dict[str, Any]] = []
            mine = settings.setdefault(scope, {})
            for key in change.unset_config:
                if key not in mine:
                    raise NotFound(_missing("config", key, env, scope), field="unset")
                del mine[key]
                changes.append(_entry("unset", "config", key, scope))
            for key, value in change.set_config.items():
                if key in mine and mine[key] == value:
                    continue
                mine[key] = value
                changes.append(_entry("set", "config", key, scope))
            hidden = secrets.setdefault(scope, {})
            for key in change.unset_secrets:
                if key not in hidden:
                    raise NotFound(_missing("secret", key, env, scope), field="key")
                del hidden[key]
                changes.append(_entry("unset", "secret", key, scope))
            if change.set_secrets:
                data_key = self._data_key(tx, gateway, actor, stamp)
                for key, value in change.set_secrets.items():
                    mark = secretbox.fingerprint(data_key, value)
                    if key in hidden and hidden[key].get("fingerprint") == mark:
                        continue  # the same value again: nothing changes
                    hidden[key] = {
                        "token": secretbox.encrypt(data_key, value),
                        "fingerprint": mark,
                        "set_by": actor.name,
                        "set_at": stamp.isoformat(),
                    }
                    changes.append(_entry("set", "secret", key, scope))
            if not changes and before is not None:
                return before
            if len(json.dumps(_drop_empty(settings))) > MAX_TOTAL_BYTES:
                raise InvalidInput(
                    f"{env}'s settings would be more than {MAX_TOTAL_BYTES} bytes as JSON", field="config"
                )
            kind = "set" if any(c["op"] == "set" for c in changes) else "unset"
            return self._commit(
                tx, actor, gateway, env, kind, note, settings, secrets, changes, stamp, before
            )

    def rollback(
        self, actor: Actor, gateway: str, env: str, to: int, note: str | None = None
    ) -> ConfigVersion:
        """Restore version `to` of an environment's configuration, as a NEW version."""
        check_environment(env, field="env")
        if not isinstance(to, int) or isinstance(to, bool) or to < 1:
            raise InvalidInput("to must be a configuration version, a whole number >= 1", field="to")
        note = check_note(note, required=False)
        stamp = now()
        with self.store.write() as tx:
            _lock(tx, gateway)
            before = sql.current(tx, gateway, env)
            target = sql.get_version(tx, gateway, env, to)
            if target is None:
                have = before.version if before else 0
                raise NotFound(f"{env} has no configuration version {to} (newest: {have})", field="to")
            assert before is not None
            if before.version == to:
                raise Conflict(f"version {to} is {env}'s current configuration already", field="to")
            changes = _differences(before, target)
            return self._commit(
                tx,
                actor,
                gateway,
                env,
                "rollback",
                note or f"Rolled back to version {to}",
                _copy(target.settings),
                _copy(target.secrets),
                changes,
                stamp,
                before,
                source_version=to,
            )

    def rotate_key(self, actor: Actor, gateway: str) -> int:
        """A new data key for the gateway, every stored secret (of every version) re-encrypted under
        it, the key wrapped with the newest server key: one transaction. Returns the secrets rotated."""
        keyring = self._keyring()
        stamp = now()
        with self.store.write() as tx:
            _lock(tx, gateway)
            wrapped = sql.wrapped_key(tx, gateway)
            old = keyring.unwrap(wrapped) if wrapped is not None else None
            new = secretbox.new_data_key()
            count = 0
            for version in sql.versions_with_secrets(tx, gateway):
                assert old is not None
                secrets = _copy(version.secrets)
                for entries in secrets.values():
                    for entry in entries.values():
                        entry["token"] = secretbox.encrypt(new, secretbox.decrypt(old, entry["token"]))
                        count += 1
                sql.replace_secrets(tx, version, secrets)
            sql.put_wrapped_key(tx, gateway, keyring.wrap(new), stamp, actor.name)
            access.record_audit(tx, actor.name, "secrets.rotate_key", gateway, gateway, tokens=count)
            return count

    def required(
        self, gateway: str, env: str, base: str, source: str | None, history_id: int | None
    ) -> dict[str, Any]:
        """What the code to be released into `env` declares it needs, and which of it `env` has: the
        release sheet's list. The code is `source`'s current version (an environment) or a history entry."""
        check_environment(env, field="env")
        check_base(base, field="base")
        with self.store.read() as tx:
            _gateway(tx, gateway)
            if history_id is not None:
                entry = tx.get_history(gateway, history_id)
                if entry is None or entry.kind == "delete":
                    raise NotFound(f"no history entry #{history_id}", field="history_id")
                manifest, entrypoint = entry.files, entry.entrypoint
            else:
                source_env = check_environment(source or "", field="source")
                fn = tx.get_function(gateway, source_env, base)
                if fn is None:
                    raise NotFound(f"no function {source_env}/{base}", field="source")
                manifest, entrypoint = fn.files, fn.entrypoint
            text = tx.read_files(gateway, {entrypoint: manifest[entrypoint]})[entrypoint]
            declared = declared_keys(text, entrypoint)
            missing = set(missing_keys(sql.current(tx, gateway, env), base, declared))
        return {
            "env": env,
            "config": [{"key": k, "present": f"config {k}" not in missing} for k in declared.config],
            "secrets": [{"key": k, "present": f"secret {k}" not in missing} for k in declared.secrets],
            "missing": sorted(missing),
        }

    # releases ---------------------------------------------------------------------------------------
    @staticmethod
    def missing_for_release(
        tx: Tx, gateway: str, env: str, base: str, files: dict[str, str], entrypoint: str
    ) -> list[str]:
        """The keys the code declares (`CONFIG`, `SECRETS` in its entrypoint) that `env` lacks."""
        declared = declared_keys(files.get(entrypoint, ""), entrypoint)
        return missing_keys(sql.current(tx, gateway, env), base, declared)

    # internals --------------------------------------------------------------------------------------
    def _keyring(self) -> secretbox.KeyRing:
        if self.keyring is None:
            raise Conflict(NO_KEY, code="no_secret_key")
        return self.keyring

    def _data_key(self, tx: Tx, gateway: str, actor: Actor, stamp: datetime) -> bytes:
        keyring = self._keyring()
        wrapped = sql.wrapped_key(tx, gateway)
        if wrapped is not None:
            try:
                return keyring.unwrap(wrapped)
            except secretbox.SecretKeyError as error:
                raise Conflict(str(error), code="secret_key_mismatch") from None
        key = secretbox.new_data_key()
        sql.put_wrapped_key(tx, gateway, keyring.wrap(key), stamp, actor.name)
        return key

    def _commit(
        self,
        tx: Tx,
        actor: Actor,
        gateway: str,
        env: str,
        kind: str,
        note: str | None,
        settings: dict[str, Any],
        secrets: dict[str, Any],
        changes: list[dict[str, Any]],
        stamp: datetime,
        before: ConfigVersion | None,
        source_version: int | None = None,
    ) -> ConfigVersion:
        version = ConfigVersion(
            gateway_id=gateway,
            env=env,
            version=(before.version if before else 0) + 1,
            kind=kind,
            note=note,
            actor=actor.name,
            created_at=stamp,
            settings=_drop_empty(settings),
            secrets=_drop_empty(secrets),
            changes=changes,
            source_version=source_version,
        )
        sql.insert_version(tx, version)
        access.record_audit(
            tx, actor.name, f"config.{kind}", env, gateway, version=version.version, changes=changes
        )
        sql.announce(tx, gateway, env, version.version)
        return version


def missing_keys(config: ConfigVersion | None, base: str, declared: DeclaredKeys) -> list[str]:
    settings = config.settings if config else {}
    secrets = config.secrets if config else {}
    have_config = set(settings.get("", {})) | set(settings.get(base, {}))
    have_secrets = set(secrets.get("", {})) | set(secrets.get(base, {}))
    return [f"config {k}" for k in declared.config if k not in have_config] + [
        f"secret {k}" for k in declared.secrets if k not in have_secrets
    ]


def public_view(version: ConfigVersion | None, gateway: str, env: str, *, values: bool) -> dict[str, Any]:
    """What the API answers: keys, who and when; plain values only when `values` (a developer or
    above); a secret's value never, only its fingerprint."""
    config = []
    secrets = []
    if version is not None:
        for scope, entries in sorted(version.settings.items()):
            for key, value in sorted(entries.items()):
                item: dict[str, Any] = {"key": key, "function": scope or None}
                if values:
                    item["value"] = value
                config.append(item)
        for scope, hidden in sorted(version.secrets.items()):
            for key, entry in sorted(hidden.items()):
                secrets.append(
                    {
                        "key": key,
                        "function": scope or None,
                        "fingerprint": entry.get("fingerprint"),
                        "set_by": entry.get("set_by"),
                        "set_at": entry.get("set_at"),
                    }
                )
    return {
        "gateway": gateway,
        "env": env,
        "version": version.version if version else 0,
        "updated_at": version.created_at.isoformat() if version else None,
        "updated_by": version.actor if version else None,
        "values_shown": values,
        "config": config,
        "secrets": secrets,
    }


def version_summary(version: ConfigVersion) -> dict[str, Any]:
    """A history entry: who, when, what kind, the note and which keys changed (never a value)."""
    return {
        "version": version.version,
        "kind": version.kind,
        "note": version.note,
        "actor": version.actor,
        "created_at": version.created_at.isoformat(),
        "changes": version.changes,
        "source_version": version.source_version,
    }


def _check_change(change: Change) -> None:
    for key in [*change.set_config, *change.unset_config]:
        check_key(key, field="config")
    for key in [*change.set_secrets, *change.unset_secrets]:
        check_key(key, field="key")
    for key, value in change.set_config.items():
        try:
            size = len(json.dumps(value))
        except (TypeError, ValueError):
            raise InvalidInput(f"config {key}: the value must be JSON", field="config") from None
        if size > MAX_VALUE_BYTES:
            raise InvalidInput(
                f"config {key}: the value is {size} bytes as JSON; at most {MAX_VALUE_BYTES}", field="config"
            )
    for key, value in change.set_secrets.items():
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"secret {key}: the value must be a non-empty string", field="value")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise InvalidInput(f"secret {key}: the value is more than {MAX_VALUE_BYTES} bytes", field="value")
    both = set(change.set_config) & set(change.unset_config)
    if both:
        raise InvalidInput(f"both set and unset: {', '.join(sorted(both))}", field="unset")
    if not (change.set_config or change.unset_config or change.set_secrets or change.unset_secrets):
        raise InvalidInput("nothing to change: give keys to set or unset", field="set")


def _differences(before: ConfigVersion, after: ConfigVersion) -> list[dict[str, Any]]:
    changes = []
    for kind, old, new in (
        ("config", before.settings, after.settings),
        ("secret", before.secrets, after.secrets),
    ):
        for scope in sorted(set(old) | set(new)):
            a, b = old.get(scope, {}), new.get(scope, {})
            for key in sorted(set(a) | set(b)):
                if key not in b:
                    changes.append(_entry("unset", kind, key, scope))
                elif key not in a or a[key] != b[key]:
                    changes.append(_entry("set", kind, key, scope))
    return changes


def _entry(op: str, kind: str, key: str, scope: str) -> dict[str, Any]:
    return {"op": op, "type": kind, "key": key, "function": scope or None}


def _missing(kind: str, key: str, env: str, scope: str) -> str:
    where = f"{env}/{scope}" if scope else env
    return f"no {kind} {key} in {where}"


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied


def _drop_empty(scopes: dict[str, Any]) -> dict[str, Any]:
    return {scope: entries for scope, entries in scopes.items() if entries}


def _gateway(tx: Tx, gateway: str) -> None:
    if tx.get_gateway(gateway) is None:
        raise NotFound(f"no gateway {gateway!r}", field="gateway")


def _lock(tx: Tx, gateway: str) -> None:
    if tx.lock_gateway(gateway) is None:
        raise NotFound(f"no gateway {gateway!r}", field="gateway")
