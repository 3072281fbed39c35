"""Reading use cases: functions, history, diffs between any two versions, the environment overview."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fnstage.deps.locks import diff_locks
from fnstage.domain.errors import InvalidInput, NotFound
from fnstage.domain.names import ENVIRONMENTS, FunctionName, check_base, check_environment, check_gateway_id
from fnstage.domain.policy import TargetOption, release_options
from fnstage.domain.versions import read_semver
from fnstage.service.rollouts import Rollout, current_rollouts, rollout
from fnstage.store.records import FunctionRecord, HistoryRecord
from fnstage.store.store import Store, Tx

MAX_HISTORY_PAGE = 200
_REF_RE = re.compile(r"^#?(\d+)$")
STATE_BY_ENV = {"dev": "in development", "staging": "QA in progress", "prod": "serving"}


MAX_ID = 2**63 - 1  # the largest id a store column holds; a bigger number names nothing


@dataclass(frozen=True)
class Version:
    """One side of a diff: a label a person can read, and the files."""

    ref: str
    label: str
    entrypoint: str
    files: dict[str, str]
    lock_hash: str | None = None
    lock: str = ""  # the lock's text ("" : no dependencies)


@dataclass(frozen=True)
class FileDiff:
    path: str
    status: str  # added | removed | modified | unchanged
    a: str | None
    b: str | None


@dataclass(frozen=True)
class EnvironmentCard:
    function: FunctionRecord
    entry: HistoryRecord | None  # the history entry that made the current version
    state: str
    rollout: Rollout


class Queries:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _gateway(self, tx: Tx, gateway: str) -> None:
        check_gateway_id(gateway)
        if tx.get_gateway(gateway) is None:
            raise NotFound(f"no gateway {gateway!r}", field="gateway")

    def function(self, gateway: str, name: str) -> tuple[FunctionRecord, dict[str, str]]:
        fname = FunctionName.parse(name)
        with self.store.read() as tx:
            self._gateway(tx, gateway)
            fn = tx.get_function(gateway, fname.env, fname.base)
            if fn is None:
                raise NotFound(f"no function {fname} in gateway {gateway!r}", field="name")
            return fn, tx.read_files(gateway, fn.files)

    def functions(self, gateway: str, env: str | None = None) -> list[FunctionRecord]:
        if env is not None:
            check_environment(env, field="env")
        with self.store.read() as tx:
            self._gateway(tx, gateway)
            return tx.list_functions(gateway, env)

    def functions_with_rollouts(
        self, gateway: str, env: str | None = None
    ) -> list[tuple[FunctionRecord, Rollout]]:
        """The gateway's functions, each with where its current version is live (one read)."""
        if env is not None:
            check_environment(env, field="env")
        with self.store.read() as tx:
            self._gateway(tx, gateway)
            functions = tx.list_functions(gateway, env)
            live = current_rollouts(tx, gateway, functions)
            return [(f, live[f.name]) for f in functions]

    def history(
        self, gateway: str, name: str, limit: int = 30, before: int | None = None
    ) -> list[HistoryRecord]:
        """Newest first. Follows the function through renames; a deleted one is found by its name."""
        fname = FunctionName.parse(name)
        if not 1 <= limit <= MAX_HISTORY_PAGE:
            raise InvalidInput(f"limit must be 1 to {MAX_HISTORY_PAGE}", field="limit")
        with self.store.read() as tx:
            self._gateway(tx, gateway)
            fn = tx.get_function(gateway, fname.env, fname.base)
            entries = tx.list_history(
                gateway,
                function_id=fn.id if fn else None,
                env=fname.env,
                base=fname.base,
                limit=limit,
                before=before,
            )
        if fn is None and not entries and before is None:
            raise NotFound(f"no function {fname} and no history under that name", field="name")
        return entries

    def entry(self, gateway: str, history_id: int) -> tuple[HistoryRecord, dict[str, str]]:
        with self.store.read() as tx:
            self._gateway(tx, gateway)
            entry = tx.get_history(gateway, history_id)
            if entry is None:
                raise NotFound(f"no history entry #{history_id} in gateway {gateway!r}", field="id")
            return entry, tx.read_files(gateway, entry.files)

    def resolve(self, gateway: str, ref: str, field: str = "ref") -> Version:
        """`dev/user/me` (current), `prod/user/me@1.0.0` (newest entry with that semver),
        `prod/user/me@v3` (version 3), or `#42` (history entry 42)."""
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidInput("empty version reference", field=field)
        ref = ref.strip()
        with self.store.read() as tx:
            self._gateway(tx, gateway)
            match = _REF_RE.match(ref)
            if match:
                number = int(match.group(1))
                entry = tx.get_history(gateway, number) if number <= MAX_ID else None
                if entry is None:
                    raise NotFound(f"no history entry {ref}", field=field)
                return _entry_version(tx, ref, entry)
            name, _, selector = ref.partition("@")
            fname = FunctionName.parse(name, field=field)
            fn = tx.get_function(gateway, fname.env, fname.base)
            if not selector:
                if fn is None:
                    raise NotFound(f"no function {fname}", field=field)
                label = f"{fname} current (v{fn.version}, {fn.semver})"
                return Version(
                    ref,
                    label,
                    fn.entrypoint,
                    tx.read_files(gateway, fn.files),
                    fn.lock_hash,
                    _lock_text(tx, fn.lock_hash),
                )
            fid = fn.id if fn else None
            if re.fullmatch(r"v\d+", selector):
                entries = [
                    e
                    for e in tx.list_history(
                        gateway, function_id=fid, env=fname.env, base=fname.base, limit=200
                    )
                    if e.version == int(selector[1:])
                ]
            else:
                read_semver(selector, field=field)
                entries = tx.list_history(
                    gateway, function_id=fid, env=fname.env, base=fname.base, semver=selector, limit=1
                )
            if not entries:
                raise NotFound(f"{fname} has no history entry {selector}", field=field)
            return _entry_version(tx, ref, entries[0])

    def rollout(self, gateway: str, name: str, version: int | None = None) -> Rollout:
        """Where `version` (default: the current one) of `name` is live."""
        fname = FunctionName.parse(name)
        with self.store.read() as tx:
            self._gateway(tx, gateway)
            fn = tx.get_function(gateway, fname.env, fname.base)
            if fn is None:
                raise NotFound(f"no function {fname} in gateway {gateway!r}", field="name")
            if version is not None and version > fn.version:
                raise InvalidInput(
                    f"{fname} has no version {version} yet (current: {fn.version})", field="version"
                )
            committed = fn.updated_at
            if version is not None and version != fn.version:
                older = [
                    e for e in tx.list_history(gateway, function_id=fn.id, limit=200) if e.version == version
                ]
                committed = older[0].created_at if older else fn.updated_at
            current = version is None or version == fn.version
            return rollout(
                tx, gateway, fn.name, version or fn.version, committed, fn.bundle_hash if current else None
            )

    def diff(self, gateway: str, a: str, b: str) -> tuple[Version, Version, list[FileDiff]]:
        left, right = self.resolve(gateway, a, "a"), self.resolve(gateway, b, "b")
        files: list[FileDiff] = []
        for path in sorted(set(left.files) | set(right.files)):
            old, new = left.files.get(path), right.files.get(path)
            status = (
                "added"
                if old is None
                else "removed"
                if new is None
                else "unchanged"
                if old == new
                else "modified"
            )
            files.append(FileDiff(path, status, old, new))
        return left, right, files

    def release_options(
        self,
        gateway: str,
        base: str,
        source_env: str | None,
        source_history_id: int | None,
        semver: str | None = None,
    ) -> tuple[str, str | None, list[TargetOption]]:
        """Where `base`'s code from an environment (its current version) or a history entry may be
        released, with the reason for each refusal and the semver to suggest: (source env, source
        semver, one option per environment)."""
        check_base(base, field="base")
        with self.store.read() as tx:
            self._gateway(tx, gateway)
            record = tx.get_gateway(gateway)
            assert record is not None  # checked just above
            if source_history_id is not None:
                entry = tx.get_history(gateway, source_history_id)
                if entry is None or entry.name.partition("/")[2] != base:
                    raise NotFound(
                        f"no history entry #{source_history_id} of {base} in gateway {gateway!r}",
                        field="source_history_id",
                    )
                source_env, source_semver = entry.env, entry.semver
            elif source_env is None:
                raise InvalidInput(
                    "say where the code comes from: source_env or source_history_id", field="source_env"
                )
            else:
                check_environment(source_env, field="source_env")
                source = tx.get_function(gateway, source_env, base)
                if source is None:
                    raise NotFound(f"no function {source_env}/{base} to release from", field="source_env")
                source_semver = source.semver
            currents: dict[str, str | None] = {}
            for env in ENVIRONMENTS:
                fn = tx.get_function(gateway, env, base)
                currents[env] = fn.semver if fn is not None else None
        options = release_options(
            source_env,
            source_semver,
            source_history_id is not None,
            currents,
            record.allow_dev_to_prod,
            semver,
        )
        return source_env, source_semver, options

    def overview(self, gateway: str, base: str) -> dict[str, EnvironmentCard | None]:
        """Dev -> staging -> prod of one function: what each environment runs and how it got there."""
        check_base(base)
        cards: dict[str, EnvironmentCard | None] = {}
        with self.store.read() as tx:
            self._gateway(tx, gateway)
            for env in ENVIRONMENTS:
                fn = tx.get_function(gateway, env, base)
                if fn is None:
                    cards[env] = None
                    continue
                entry = tx.get_history(gateway, fn.history_id) if fn.history_id else None
                live = rollout(tx, gateway, fn.name, fn.version, fn.updated_at, fn.bundle_hash)
                cards[env] = EnvironmentCard(fn, entry, STATE_BY_ENV[env], live)
        if all(card is None for card in cards.values()):
            raise NotFound(f"no function {base} in any environment of gateway {gateway!r}", field="name")
        return cards


def _entry_version(tx: Tx, ref: str, entry: HistoryRecord) -> Version:
    note = f" - {entry.changelog}" if entry.changelog else ""
    label = f"#{entry.id} {entry.name} v{entry.version} ({entry.semver}, {entry.kind}){note}"
    return Version(
        ref,
        label,
        entry.entrypoint,
        tx.read_files(entry.gateway_id, entry.files),
        entry.lock_hash,
        _lock_text(tx, entry.lock_hash),
    )


def _lock_text(tx: Tx, lock_hash: str | None) -> str:
    return (tx.get_lock(lock_hash) or "") if lock_hash else ""


def lock_changes(a: Version, b: Version) -> list[dict[str, str | None]]:
    """What a diff shows beside the files: each package whose locked version changes from a to b."""
    return diff_locks(a.lock, b.lock)
