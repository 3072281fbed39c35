"""What a typed response costs: FastAPI's path without a model (jsonable_encoder, then json.dumps as
JSONResponse renders) against the path with one (`api.responses`: validate, then pydantic-core's JSON),
for the save PUT's body, in one process, alternating. Results go to BENCHMARKS.md.

    .venv/bin/python bench/response_models.py [--rounds 7] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from machine import describe

from fnstage.api import routes_functions
from fnstage.api.version_urls import version_url


def _saved_body() -> dict[str, Any]:
    """A save's answer as `routes_functions.save_function` builds it (3 files, a history entry)."""
    hashes = {name: "ab" * 32 for name in ("index.py", "utils.py", "helpers.py")}
    common = {"gateway": "bench", "name": "dev/user/me", "env": "dev", "base": "user/me", "version": 42}
    function = {
        **common,
        "semver": "0.0.42",
        "entrypoint": "index.py",
        "file_hashes": hashes,
        "bundle_hash": "cd" * 32,
        "methods": ["GET", "POST"],
        "description": "",
        "tags": [],
        "config": {},
        "timeout_s": 30.0,
        "history_id": 420,
        "lock_hash": None,
        "created_at": "2026-11-30T22:00:00+00:00",
        "created_by": "admin",
        "updated_at": "2026-11-30T22:01:00+00:00",
        "updated_by": "admin",
    }
    history = {
        "id": 420,
        **common,
        "kind": "update",
        "semver": "0.0.42",
        "changelog": "save 42",
        "actor": "admin",
        "created_at": "2026-11-30T22:01:00+00:00",
        "dependencies": [],
        "lock_hash": None,
        "source_env": None,
        "source_history_id": None,
        "source_version": None,
        "entrypoint": "index.py",
        "file_hashes": hashes,
        "bundle_hash": "cd" * 32,
        "url": version_url("http://127.0.0.1:8471", "bench", "dev", "user/me", 42),
    }
    return {"function": function, "history": history, "changed": True}


def _without_model(body: dict[str, Any]) -> bytes:
    content = jsonable_encoder(body)
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    route = next(
        r for r in routes_functions.router.routes if isinstance(r, APIRoute) and r.name == "save_function"
    )
    field = route.response_field
    assert field is not None
    body = _saved_body()

    def with_model(body: dict[str, Any]) -> bytes:
        value, errors = field.validate(body, {}, loc=("response",))
        assert not errors
        json_bytes: bytes = field.serialize_json(value, exclude_unset=True)
        return json_bytes

    assert json.loads(with_model(body)) == json.loads(_without_model(body))
    results: dict[str, list[float]] = {"without_model_us": [], "with_model_us": []}
    for _ in range(args.rounds):
        for name, fn in (("without_model_us", _without_model), ("with_model_us", with_model)):
            started = time.perf_counter()
            for _ in range(args.calls):
                fn(body)
            results[name].append((time.perf_counter() - started) / args.calls * 1e6)
    without, with_ = (
        statistics.median(results["without_model_us"]),
        statistics.median(results["with_model_us"]),
    )
    print(
        json.dumps(
            {
                "save_body_without_model_us_median": round(without, 1),
                "save_body_with_model_us_median": round(with_, 1),
                "ratio_with_to_without": round(with_ / without, 2),
                "rounds": results,
                "machine": describe(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
