"""Records to the API's JSON: one function per record type so every route answers the same shape."""

from __future__ import annotations

from typing import Any

from fnstage.deps.locks import locked_packages
from fnstage.service.queries import EnvironmentCard, FileDiff, Version
from fnstage.service.rollouts import Rollout
from fnstage.store.records import FunctionRecord, GatewayRecord, HistoryRecord


def gateway(g: GatewayRecord) -> dict[str, Any]:
    return {
        "id": g.id,
        "allow_dev_to_prod": g.allow_dev_to_prod,
        "history_limit": g.history_limit,
        "dependencies": g.dependencies,
        "lock_hash": g.lock_hash,
        "created_at": g.created_at.isoformat(),
        "created_by": g.created_by,
    }


def lock(lock_hash: str | None, text: str | None) -> dict[str, Any] | None:
    """A lock as the API shows it: its hash, {package: version} and uv's text (with the hashes)."""
    if lock_hash is None or text is None:
        return None
    return {"hash": lock_hash, "packages": locked_packages(text), "text": text}


def function(f: FunctionRecord, files: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "gateway": f.gateway_id,
        "name": f.name,
        "env": f.env,
        "base": f.base,
        "version": f.version,
        "semver": f.semver,
        "entrypoint": f.entrypoint,
        "file_hashes": f.files,
        "bundle_hash": f.bundle_hash,
        "methods": f.methods,
        "description": f.description,
        "tags": f.tags,
        "config": f.config,
        "timeout_s": f.timeout_s,
        "history_id": f.history_id,
        "lock_hash": f.lock_hash,
        "created_at": f.created_at.isoformat(),
        "created_by": f.created_by,
        "updated_at": f.updated_at.isoformat(),
        "updated_by": f.updated_by,
    }
    if files is not None:
        body["files"] = files
    return body


def entry(h: HistoryRecord, files: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": h.id,
        "gateway": h.gateway_id,
        "name": h.name,
        "env": h.env,
        "base": h.base,
        "kind": h.kind,
        "version": h.version,
        "semver": h.semver,
        "note": h.changelog,
        "changelog": h.changelog,
        "actor": h.actor,
        "created_at": h.created_at.isoformat(),
        "dependencies": h.dependencies,
        "lock_hash": h.lock_hash,
        "source_env": h.source_env,
        "source_history_id": h.source_history_id,
        "source_version": h.source_version,
        "entrypoint": h.entrypoint,
        "file_hashes": h.files,
        "bundle_hash": h.bundle_hash,
    }
    if files is not None:
        body["files"] = files
    return body


def version(v: Version) -> dict[str, Any]:
    return {"ref": v.ref, "label": v.label, "entrypoint": v.entrypoint, "lock_hash": v.lock_hash}


def file_diff(d: FileDiff) -> dict[str, Any]:
    return {"path": d.path, "status": d.status, "a": d.a, "b": d.b}


def card(c: EnvironmentCard | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        **function(c.function),
        "state": c.state,
        "note": c.entry.changelog if c.entry else None,
        "kind": c.entry.kind if c.entry else None,
        "deployed_by": c.entry.actor if c.entry else c.function.updated_by,
        "deployed_at": (c.entry.created_at if c.entry else c.function.updated_at).isoformat(),
        "runtime": rollout(c.rollout),
    }


def rollout(r: Rollout) -> dict[str, Any]:
    return {
        "name": r.name,
        "version": r.version,
        "committed_at": r.committed_at.isoformat(),
        "live": r.count("live"),
        "failed": r.count("failed"),
        "pending": r.count("pending"),
        "held": r.held,
        "silent": r.count("silent"),
        "active": r.active,
        "done": r.done,
        "latency_ms": r.latency_ms,
        "requests": sum(s.requests for s in r.runtimes),
        "errors": sum(s.errors for s in r.runtimes),
        "summary": r.summary,
        "runtimes": [
            {
                "id": s.runtime_id,
                "host": s.host,
                "pid": s.pid,
                "state": s.state,
                "held": s.held,
                "version": s.version,
                "error": s.error,
                "loaded_at": s.loaded_at.isoformat() if s.loaded_at else None,
                "heartbeat_at": s.heartbeat_at.isoformat(),
                "feed_state": s.feed_state,
                "feed_since": s.feed_since.isoformat(),
                "environment": s.environment,
                "sandbox": s.sandbox,
                "requests": s.requests,
                "errors": s.errors,
                "last_error": s.last_error,
            }
            for s in r.runtimes
        ],
    }


def rollout_summary(r: Rollout) -> dict[str, Any]:
    """A rollout's counts and summary without the per-runtime list: a function list's rows are many."""
    return {
        "live": r.count("live"),
        "failed": r.count("failed"),
        "pending": r.count("pending"),
        "held": r.held,
        "silent": r.count("silent"),
        "active": r.active,
        "requests": sum(s.requests for s in r.runtimes),
        "errors": sum(s.errors for s in r.runtimes),
        "summary": r.summary,
    }
