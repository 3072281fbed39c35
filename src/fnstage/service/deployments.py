"""The use cases that change what runs: save, promote, release, rollback, rename, delete.

Each is ONE write transaction through `_commit` (or `_unpublish`): the active version, a history
record built from the NEW state, history pruning and the published entry commit together. Builds run
before the transaction so the write lock is held for milliseconds, not for a compile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fnstage.build import Bundle, build
from fnstage.build.bundle import sha256_text
from fnstage.deps.environments import Environments, top_level_modules
from fnstage.domain.canary import CanarySpec
from fnstage.domain.canary import check_spec as check_canary_spec
from fnstage.domain.dependencies import ImportableModules
from fnstage.domain.errors import BuildFailed, Conflict, InvalidInput, NotFound, StaleVersion
from fnstage.domain.names import FunctionName, check_base, check_environment, check_gateway_id
from fnstage.domain.policy import (
    check_note,
    check_release_semver,
    check_release_target,
    check_save_environment,
    needs_note_and_greater_semver,
)
from fnstage.domain.versions import INITIAL_SEMVER, parse_semver, read_semver
from fnstage.service.canaries import refuse_while_canary_runs, start_canary
from fnstage.service.configuration import Configurations
from fnstage.service.identity import Actor
from fnstage.service.metadata import Metadata, check_config, merge
from fnstage.service.rollouts import rollout
from fnstage.store.canaries import RUNNING as CANARY_RUNNING
from fnstage.store.records import FunctionRecord, GatewayRecord, HistoryRecord
from fnstage.store.store import DeployTarget, Store, Tx, now

DEFAULT_HISTORY_LIMIT = 30

Builder = Callable[[Mapping[str, str], str, Iterable[str]], Bundle]


@dataclass(frozen=True)
class Deployed:
    function: FunctionRecord
    history: HistoryRecord | None
    changed: bool = True


@dataclass(frozen=True)
class Code:
    """What a deployment puts live: source, entrypoint and the compiled bundle built from them."""

    files: Mapping[str, str]
    entrypoint: str
    compiled: bytes
    bundle_hash: str
    dependencies: list[str]
    lock_hash: str | None = None
    lock: str | None = None  # the lock's text, published with the code

    @classmethod
    def of(
        cls, bundle: Bundle, dependencies: list[str], lock_hash: str | None = None, lock: str | None = None
    ) -> Code:
        return cls(
            bundle.files, bundle.entrypoint, bundle.compiled, bundle.hash, list(dependencies), lock_hash, lock
        )


def _belongs(tx: Tx, entry: HistoryRecord, base: str) -> bool:
    """An entry belongs to `base` when it was made under that name or by the function now called so."""
    if entry.base == base:
        return True
    fn = tx.get_function(entry.gateway_id, entry.env, base)
    return fn is not None and fn.id == entry.function_id


def load_failure(tx: Tx, fn: FunctionRecord) -> str | None:
    """ "dev/user/me v7 failed to load on 1/1: ModuleNotFoundError ..." when runtimes refused this very
    version (its code, by hash); None when none did (live, still loading, or no runtime heard of)."""
    state = rollout(tx, fn.gateway_id, fn.name, fn.version, fn.updated_at, fn.bundle_hash)
    failed = [r for r in state.runtimes if r.state == "failed"]
    if not failed:
        return None
    return f"{fn.name} v{fn.version} failed to load on {len(failed)}/{state.active}: {failed[0].error}"


def _metadata(fn: FunctionRecord | None) -> Metadata:
    if fn is None:
        return Metadata()
    return Metadata(list(fn.methods), fn.description, list(fn.tags), dict(fn.config), fn.timeout_s)


class Deployments:
    def __init__(
        self,
        store: Store,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        builder: Builder = build,
        environments: Environments | None = None,
    ) -> None:
        self.store = store
        self.history_limit = history_limit
        self.build = builder
        self.environments = environments or Environments()
        # each gateway's (dependency pins, lock) as this process last saw them (see `_build`)
        self._known_pins: dict[str, tuple[list[str], str | None]] = {}
        # lock texts and the modules their environments provide, by lock hash (never change)
        self._lock_texts: dict[str, str] = {}
        self._modules: dict[str, ImportableModules] = {}

    # save -----------------------------------------------------------------------------------------
    def save(
        self,
        actor: Actor,
        gateway: str,
        name: str,
        files: Mapping[str, str],
        entrypoint: str = "index.py",
        *,
        semver: str | None = None,
        changelog: str | None = None,
        expected_version: int | None = None,
        methods: list[str] | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
        config: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Deployed:
        """Build and deploy new code to dev (the web IDE's Save, the CLI's push)."""
        fname = FunctionName.parse(name)
        check_save_environment(fname.env)
        if semver is not None:
            parse_semver(semver)
        changelog = check_note(changelog, required=False, field="changelog")
        if expected_version is not None and (not isinstance(expected_version, int) or expected_version < 0):
            raise InvalidInput("expected_version must be a whole number >= 0", field="expected_version")
        if config:
            check_config(config)
            raise InvalidInput(
                "config is set per environment now, not with the code: fnstage config set dev KEY=VALUE "
                "(or PATCH /gateways/GW/config/dev)",
                field="config",
            )
        bundle, pins = self._build(gateway, files, entrypoint)
        shas = [sha256_text(text) for text in bundle.files.values()]
        with self.store.write_for_deploy(gateway, fname.env, fname.base, shas) as (tx, locked):
            gw, current, latest = self._check_target(tx, gateway, fname, locked, refuse_canary=True)
            self._known_pins[gateway] = (gw.dependencies, gw.lock_hash)
            lock = self._lock_text(tx, gw.lock_hash)
            if (gw.dependencies, gw.lock_hash) != pins:  # changed since: build against the gateway's now
                bundle = self.build(files, entrypoint, self._importable(gw.dependencies, gw.lock_hash, lock))
            if expected_version is not None:
                have = current.version if current else 0
                if have != expected_version:
                    raise StaleVersion(
                        f"{fname} is at version {have} but this save was based on version "
                        f"{expected_version}: someone else saved meanwhile; pull, merge and save again",
                        field="expected_version",
                        details={"current_version": have},
                    )
            meta = merge(
                _metadata(current),
                methods=methods,
                description=description,
                tags=tags,
                config=config,
                timeout_s=timeout_s,
            )
            new_semver = semver or (current.semver if current else INITIAL_SEMVER)
            if (
                current is not None
                and current.bundle_hash == bundle.hash
                and current.lock_hash == gw.lock_hash
                and new_semver == current.semver
                and meta == _metadata(current)
            ):
                return Deployed(current, None, changed=False)
            return self._commit(
                tx,
                gw,
                fname,
                current,
                Code.of(bundle, gw.dependencies, gw.lock_hash, lock),
                meta,
                kind="create" if current is None else "save",
                semver=new_semver,
                changelog=changelog,
                actor=actor,
                latest_version=latest,
            )

    # promote, release, rollback -------------------------------------------------------------------
    def promote(
        self,
        actor: Actor,
        gateway: str,
        name: str,
        target: str,
        semver: str | None,
        note: str | None,
        *,
        force: bool = False,
        canary: CanarySpec | None = None,
    ) -> Deployed:
        """Copy an environment's current version, compiled code and lock included, forward to `target`."""
        fname = FunctionName.parse(name)
        return self.release(
            actor, gateway, fname.base, fname.env, None, target, semver, note, force=force, canary=canary
        )

    def rollback(
        self,
        actor: Actor,
        gateway: str,
        name: str,
        *,
        to_semver: str | None,
        to_history_id: int | None,
        semver: str | None,
        note: str | None,
        canary: CanarySpec | None = None,
    ) -> Deployed:
        """Bring back an earlier version of this environment's code, released as a NEW version."""
        fname = FunctionName.parse(name)
        entry = self._find_entry(gateway, fname, to_semver, to_history_id)
        return self.release(
            actor, gateway, fname.base, fname.env, entry.id, fname.env, semver, note, canary=canary
        )

    def release(
        self,
        actor: Actor,
        gateway: str,
        base: str,
        source_env: str | None,
        source_history_id: int | None,
        target: str,
        semver: str | None,
        note: str | None,
        *,
        force: bool = False,
        canary: CanarySpec | None = None,
    ) -> Deployed:
        """Release an environment's current version or any history entry into `target`. A current
        version that failed to load on its runtimes is refused unless `force` (history says so). With
        `canary`, to a share of its requests first (`service.canaries`)."""
        check_base(base, field="base")
        check_environment(target, field="target")
        if canary is not None:
            check_canary_spec(canary)
        gw = self._gateway(gateway)
        entry: HistoryRecord | None = None
        code: Code | None = None
        if source_history_id is not None:
            entry, code = self._rebuild_entry(gw, base, source_env, source_history_id)
            source_env = entry.env
        if source_env is None:
            raise InvalidInput(
                "say where the code comes from: source_env or source_history_id", field="source_env"
            )
        check_environment(source_env, field="source_env")
        is_rollback = check_release_target(source_env, target, gw.allow_dev_to_prod)
        if is_rollback and entry is None:
            raise Conflict(
                f"{target}/{base} is already {target}'s current version: to bring back older code, "
                "release a history entry",
                field="source_history_id",
            )
        strict = needs_note_and_greater_semver(target, is_rollback)
        note = check_note(note, required=strict)
        fname = FunctionName(target, base)
        forced = ""
        with self.store.write_for_deploy(gateway, fname.env, fname.base) as (tx, locked):
            gw, current, latest = self._check_target(tx, gateway, fname, locked, refuse_canary=True)
            check_release_semver(semver, target, current.semver if current else None, required=strict)
            if entry is None:
                source = tx.get_function(gateway, source_env, base)
                if source is None:
                    raise NotFound(f"no function {source_env}/{base} to release from", field="source_env")
                failure = load_failure(tx, source)
                if failure is not None and not force:
                    raise Conflict(
                        f"{failure}: fix it and save again, or release it anyway with --force",
                        field="force",
                        code="failed_to_load",
                    )
                if failure is not None:
                    forced = f"forced past: {failure}"
                code = self._current_code(tx, source, gw)
                meta = _metadata(source)
                source_semver, source_version, source_history = (
                    source.semver,
                    source.version,
                    source.history_id,
                )
                kind = "promote"
            else:
                assert code is not None
                meta = _metadata(current) if current else Metadata()
                source_semver, source_version, source_history = entry.semver, entry.version, entry.id
                kind = "rollback" if is_rollback else "release"
            # configuration belongs to its environment (`service.configuration`): never carried
            meta = Metadata(meta.methods, meta.description, meta.tags, {}, meta.timeout_s)
            assert code is not None
            missing = Configurations.missing_for_release(
                tx, gateway, target, base, dict(code.files), code.entrypoint
            )
            if missing:
                raise Conflict(
                    f"{fname} needs what {target} does not have: {', '.join(missing)}. Set them first "
                    f"(fnstage config set {target} KEY=VALUE, fnstage secret set {target} KEY)",
                    field="target",
                    code="missing_configuration",
                    details={"missing": missing, "env": target},
                )
            if note is None:
                note = f"Deployed from {source_env} to {target} (version: {source_semver})"
            if forced:
                note = f"{note} [{forced}]"
            if canary is not None:
                return start_canary(
                    self,
                    tx,
                    gw,
                    fname,
                    current,
                    code,
                    canary,
                    semver=semver or source_semver,
                    note=note,
                    actor=actor,
                    source_env=source_env,
                    source_history_id=source_history,
                    source_version=source_version,
                    latest_version=latest,
                )
            return self._commit(
                tx,
                gw,
                fname,
                current,
                code,
                meta,
                kind=kind,
                semver=semver or source_semver,
                changelog=note,
                actor=actor,
                source_env=source_env,
                source_history_id=source_history,
                source_version=source_version,
                latest_version=latest,
            )

    # rename, delete -------------------------------------------------------------------------------
    def rename(self, actor: Actor, gateway: str, name: str, new_name: str) -> Deployed:
        """Publish under the new name and remove the old one in the same transaction."""
        old = FunctionName.parse(name)
        new = FunctionName.parse(new_name, field="new_name")
        if new.env != old.env:
            raise InvalidInput(
                "a rename keeps the environment: to move code between environments, promote it",
                field="new_name",
            )
        if new == old:
            raise Conflict("the new name is the current name: nothing to rename", field="new_name")
        with self.store.write() as tx:
            gw = self._lock(tx, gateway)
            current = self._existing(tx, gateway, old)
            refuse_while_canary_runs(tx, gateway, old, doing="renamed")
            if tx.get_function(gateway, new.env, new.base):
                raise Conflict(f"{new} exists already", field="new_name")
            code = self._current_code(tx, current, gw)
            return self._commit(
                tx,
                gw,
                new,
                current,
                code,
                _metadata(current),
                kind="rename",
                semver=current.semver,
                changelog=f"Renamed from {old} to {new}",
                actor=actor,
                old_name=old,
            )

    def delete(self, actor: Actor, gateway: str, name: str) -> HistoryRecord:
        """Unpublish and remove the active version; its history stays, so it can be released again."""
        fname = FunctionName.parse(name)
        with self.store.write() as tx:
            gw = self._lock(tx, gateway)
            current = self._existing(tx, gateway, fname)
            refuse_while_canary_runs(tx, gateway, fname, doing="deleted")
            record = self._history(
                tx,
                gw,
                current.id,
                fname,
                current.version + 1,
                "delete",
                current.semver,
                current.entrypoint,
                current.files,
                current.bundle_hash,
                f"Deleted {fname}",
                actor,
                self._dependencies_of(tx, current, gw),
                lock_hash=current.lock_hash,
            )
            tx.delete_function(current.id)
            # the history entry now holds the references the deleted row held: no change
            tx.unpublish(gateway, str(fname), current.version + 1)
            return record

    # the one commit step (also how a canary decision is written: service.canaries) ------------------
    def _commit(
        self,
        tx: Tx,
        gw: GatewayRecord,
        fname: FunctionName,
        current: FunctionRecord | None,
        code: Code,
        meta: Metadata,
        *,
        kind: str,
        semver: str,
        changelog: str | None,
        actor: Actor,
        source_env: str | None = None,
        source_history_id: int | None = None,
        source_version: int | None = None,
        old_name: FunctionName | None = None,
        latest_version: int | None = None,
    ) -> Deployed:
        manifest = tx.put_files(gw.id, code.files)
        version = self._next_version(tx, gw.id, fname, current, latest_version)
        stamp = now()
        values: dict[str, Any] = dict(
            gateway_id=gw.id,
            env=fname.env,
            base=fname.base,
            entrypoint=code.entrypoint,
            files=manifest,
            bundle_hash=code.bundle_hash,
            compiled=code.compiled,
            version=version,
            semver=semver,
            methods=meta.methods,
            description=meta.description,
            tags=meta.tags,
            config=meta.config,
            timeout_s=meta.timeout_s,
            updated_at=stamp,
            updated_by=actor.name,
            lock_hash=code.lock_hash,
        )
        if current is None:
            created_at, created_by = stamp, actor.name
            function_id = tx.insert_function(
                {**values, "created_at": created_at, "created_by": created_by, "history_id": None}
            )
        else:
            created_at, created_by = current.created_at, current.created_by
            function_id = current.id
        record = self._history(
            tx,
            gw,
            function_id,
            fname,
            version,
            kind,
            semver,
            code.entrypoint,
            manifest,
            code.bundle_hash,
            changelog,
            actor,
            code.dependencies,
            lock_hash=code.lock_hash,
            source_env=source_env,
            source_history_id=source_history_id,
            source_version=source_version,
        )
        tx.update_function(function_id, {**values, "history_id": record.id})
        # Every reference this deployment changes: the active row and the new history entry now name
        # the new files; the row no longer names the old ones, nor pruned entries theirs.
        tx.prune_history_and_change_refs(
            gw.id,
            function_id,
            fname.env,
            gw.history_limit or self.history_limit,
            plus=[*manifest.values(), *manifest.values()],
            minus=list(current.files.values()) if current else [],
        )
        function = FunctionRecord(
            **{**values, "timeout_s": float(meta.timeout_s)},
            id=function_id,
            history_id=record.id,
            created_at=created_at,
            created_by=created_by,
        )
        tx.publish(function, code.files, old_name=str(old_name) if old_name else None, lock=code.lock)
        return Deployed(function, record)

    def _history(
        self,
        tx: Tx,
        gw: GatewayRecord,
        function_id: int,
        fname: FunctionName,
        version: int,
        kind: str,
        semver: str,
        entrypoint: str,
        manifest: Mapping[str, str],
        bundle_hash: str,
        changelog: str | None,
        actor: Actor,
        dependencies: list[str],
        *,
        lock_hash: str | None = None,
        source_env: str | None = None,
        source_history_id: int | None = None,
        source_version: int | None = None,
    ) -> HistoryRecord:
        """The history entry of a deployment; the caller takes its references to the files."""
        return tx.insert_history(
            dict(
                gateway_id=gw.id,
                function_id=function_id,
                env=fname.env,
                base=fname.base,
                kind=kind,
                version=version,
                semver=semver,
                entrypoint=entrypoint,
                files=dict(manifest),
                bundle_hash=bundle_hash,
                changelog=changelog,
                actor=actor.name,
                dependencies=list(dependencies),
                lock_hash=lock_hash,
                source_env=source_env,
                source_history_id=source_history_id,
                source_version=source_version,
                created_at=now(),
            )
        )

    # helpers --------------------------------------------------------------------------------------
    def _next_version(
        self,
        tx: Tx,
        gateway: str,
        fname: FunctionName,
        current: FunctionRecord | None,
        latest_version: int | None = None,
    ) -> int:
        """+1 on every deployment; a name that was deleted (or renamed away) continues its numbering,
        so a runtime never sees a name's version go backwards. `latest_version`: the name's highest
        version in history, when the caller read it already (`Tx.lock_for_deploy`)."""
        latest = current.version if current else 0
        if latest_version is None:
            latest_version = tx.latest_version(gateway, fname.env, fname.base)
        return max(latest, latest_version) + 1

    def _build(
        self, gateway: str, files: Mapping[str, str], entrypoint: str
    ) -> tuple[Bundle, tuple[list[str], str | None]]:
        """Build before the write transaction (the gateway's lock is then held for milliseconds, not
        for a compile), against the gateway's pins as this process last saw them: reading them costs
        a transaction on every save. The write transaction compares them with the pins under the
        gateway's lock and builds again if they changed. A build that fails with the remembered pins
        is tried once more with the pins read now, since it may fail only because they changed."""
        known = self._known_pins.get(gateway)
        if known is not None and (known[1] is None or known[1] in self._modules):
            try:
                return self.build(files, entrypoint, self._importable(known[0], known[1], None)), known
            except BuildFailed:
                self._known_pins.pop(gateway, None)  # read them below, and build again with them
        gw = self._gateway(gateway)
        lock = None
        if gw.lock_hash is not None and gw.lock_hash not in self._lock_texts:
            with self.store.read() as tx:
                lock = self._lock_text(tx, gw.lock_hash)
        pins = (gw.dependencies, gw.lock_hash)
        self._known_pins[gateway] = pins
        return self.build(files, entrypoint, self._importable(gw.dependencies, gw.lock_hash, lock)), pins

    def _lock_text(self, tx: Tx, lock_hash: str | None) -> str | None:
        """A lock's text, read once per process (a lock never changes: its hash names it)."""
        if lock_hash is None:
            return None
        text = self._lock_texts.get(lock_hash)
        if text is None:
            text = tx.get_lock(lock_hash)
            if text is None:
                raise NotFound(f"lock {lock_hash[:12]} is missing from the store", field="dependencies")
            self._lock_texts[lock_hash] = text
        return text

    def _importable(self, requirements: list[str], lock_hash: str | None, lock: str | None) -> Iterable[str]:
        """What a build may import: the top-level modules of the lock's installed environment (from the
        distributions' metadata: `yaml` for PyYAML), installing it on this host first if it lacks it."""
        if lock_hash is None:
            return requirements
        modules = self._modules.get(lock_hash)
        if modules is None:
            if lock is None:
                with self.store.read() as tx:
                    lock = self._lock_text(tx, lock_hash)
            assert lock is not None
            modules = ImportableModules(top_level_modules(self.environments.ensure(lock)))
            self._modules[lock_hash] = modules
        return modules

    def _gateway(self, gateway: str) -> GatewayRecord:
        check_gateway_id(gateway)
        with self.store.read() as tx:
            gw = tx.get_gateway(gateway)
        if gw is None:
            raise NotFound(f"no gateway {gateway!r}", field="gateway")
        return gw

    def _lock_target(
        self, tx: Tx, gateway: str, fname: FunctionName
    ) -> tuple[GatewayRecord, FunctionRecord | None, int]:
        """Lock the gateway and read what a deployment to `fname` needs, in one statement, inside a
        transaction begun already (deployments begin with it instead: `Store.write_for_deploy`)."""
        target = tx.lock_for_deploy(gateway, fname.env, fname.base)
        return self._check_target(tx, gateway, fname, target)

    def _check_target(
        self,
        tx: Tx,
        gateway: str,
        fname: FunctionName,
        target: DeployTarget,
        *,
        refuse_canary: bool = False,
    ) -> tuple[GatewayRecord, FunctionRecord | None, int]:
        """The gateway, function and latest version a deployment read under the gateway's lock; with
        `refuse_canary`, refuse it while the function's canary runs."""
        if target.gateway is None:
            raise NotFound(f"no gateway {gateway!r}", field="gateway")
        if refuse_canary and target.canary_state == CANARY_RUNNING:
            refuse_while_canary_runs(tx, gateway, fname)  # reads the canary, to say which one
        return target.gateway, target.function, target.latest_version

    def _lock(self, tx: Tx, gateway: str) -> GatewayRecord:
        gw = tx.lock_gateway(gateway)
        if gw is None:
            raise NotFound(f"no gateway {gateway!r}", field="gateway")
        return gw

    def _existing(self, tx: Tx, gateway: str, fname: FunctionName) -> FunctionRecord:
        current = tx.get_function(gateway, fname.env, fname.base)
        if current is None:
            raise NotFound(f"no function {fname} in gateway {gateway!r}", field="name")
        return current

    def _dependencies_of(self, tx: Tx, fn: FunctionRecord, gw: GatewayRecord) -> list[str]:
        entry = tx.get_history(gw.id, fn.history_id) if fn.history_id else None
        return entry.dependencies if entry else gw.dependencies

    def _current_code(self, tx: Tx, fn: FunctionRecord, gw: GatewayRecord) -> Code:
        """A version's code with the lock it was built with: promote and rename carry both."""
        return Code(
            files=tx.read_files(gw.id, fn.files),
            entrypoint=fn.entrypoint,
            compiled=fn.compiled,
            bundle_hash=fn.bundle_hash,
            dependencies=self._dependencies_of(tx, fn, gw),
            lock_hash=fn.lock_hash,
            lock=self._lock_text(tx, fn.lock_hash),
        )

    def _rebuild_entry(
        self, gw: GatewayRecord, base: str, source_env: str | None, history_id: int
    ) -> tuple[HistoryRecord, Code]:
        """History keeps source only: rebuild it with the dependency pins it was deployed with."""
        with self.store.read() as tx:
            entry = tx.get_history(gw.id, history_id)
            if entry is None:
                raise NotFound(
                    f"no history entry #{history_id} in gateway {gw.id!r}", field="source_history_id"
                )
            files = tx.read_files(gw.id, entry.files)
            belongs = _belongs(tx, entry, base)
            lock = self._lock_text(tx, entry.lock_hash)
        if not belongs:
            raise InvalidInput(
                f"history entry #{history_id} belongs to {entry.name}, not to {base}",
                field="source_history_id",
            )
        if source_env is not None and entry.env != source_env:
            raise InvalidInput(
                f"history entry #{history_id} is from {entry.env}, not {source_env}",
                field="source_history_id",
            )
        # the entry's own lock, not the gateway's current one: a rollback brings back its packages too
        bundle = self.build(
            files, entry.entrypoint, self._importable(entry.dependencies, entry.lock_hash, lock)
        )
        return entry, Code.of(bundle, entry.dependencies, entry.lock_hash, lock)

    def _find_entry(
        self, gateway: str, fname: FunctionName, to_semver: str | None, to_history_id: int | None
    ) -> HistoryRecord:
        if (to_semver is None) == (to_history_id is None):
            raise InvalidInput(
                "say which version to roll back to: to_semver or to_history_id", field="to_semver"
            )
        self._gateway(gateway)
        with self.store.read() as tx:
            if to_history_id is not None:
                entry = tx.get_history(gateway, to_history_id)
                if entry is None or entry.env != fname.env or not _belongs(tx, entry, fname.base):
                    raise NotFound(f"no history entry #{to_history_id} of {fname}", field="to_history_id")
                return entry
            assert to_semver is not None
            read_semver(to_semver, field="to_semver")
            fn = tx.get_function(gateway, fname.env, fname.base)
            matches = tx.list_history(
                gateway,
                function_id=fn.id if fn else None,
                env=fname.env,
                base=fname.base,
                semver=to_semver,
                limit=10,
            )
        matches = [m for m in matches if m.env == fname.env and m.kind != "delete"]
        if not matches:
            raise NotFound(f"{fname} has no history entry with semver {to_semver}", field="to_semver")
        return matches[0]
