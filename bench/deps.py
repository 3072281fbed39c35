"""Dependencies (issue 12): what a lock costs to resolve and install, what it adds to a save, and how
long a lock-changing save takes to serve from its new cell.

    .venv/bin/python bench/deps.py [--rounds 10] [--saves 200] [--moves 10]

Packages come from a folder of small wheels built here (`fnstage.testing.wheelhouse`: five packages),
through the same uv calls fnstage makes (`--find-links`, `--no-index`), so the figures are uv's and
fnstage's, not the network's. `--pypi` adds a resolve + install of five real PyPI packages.

1. resolve + install of a 5-package lock: cold (empty uv cache, no environment), warm (uv's cache
   holds the wheels; a new environment hard-linked from it), and installed (the environment exists).
2. a save over HTTP to a real `fnstage up`: a gateway without dependencies beside one with a 5-package
   lock that does not change, alternating, p50 / p99.
3. a lock-changing save -> the function answers from its new lock's cell: `deps set` (installed
   already: alternating between two locks), then a save; the time from sending the save to the first
   answer with the new package version. Beside it, a save that keeps the lock (same cell).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
from machine import describe, median, percentile

from fnstage.deps.environments import Environments
from fnstage.deps.locks import resolve
from fnstage.deps.uv import IndexSettings
from fnstage.testing import UpProcess, offline_env, wheelhouse

FIVE = ["fnpkg==1.0", "native-thing", "alpha-pkg", "beta-pkg", "gamma-pkg"]
PYPI_FIVE = ["humanize==4.9.0", "six==1.16.0", "idna==3.7", "certifi==2024.2.2", "packaging==24.0"]
USES = "import fnpkg\n\n\ndef main(ctx):\n    return {'version': fnpkg.__version__, 'n': %d}\n"


def install_rounds(requirements: list[str], base: IndexSettings, root: Path, rounds: int) -> dict[str, float]:
    cold, warm, installed = [], [], []
    for i in range(rounds):
        cache = root / f"cache-{i}"
        settings = replace(base, cache_dir=str(cache))
        envs = Environments(root / f"envs-{i}", settings)
        start = time.perf_counter()
        envs.ensure(resolve(requirements, settings).text)
        cold.append(time.perf_counter() - start)
        envs = Environments(root / f"envs-{i}-warm", settings)
        start = time.perf_counter()
        lock = resolve(requirements, settings)
        envs.ensure(lock.text)
        warm.append(time.perf_counter() - start)
        start = time.perf_counter()
        envs.ensure(lock.text)
        installed.append(time.perf_counter() - start)
        shutil.rmtree(cache, ignore_errors=True)
    return {
        "cold_ms": median(cold) * 1000,
        "warm_ms": median(warm) * 1000,
        "installed_ms": median(installed) * 1000,
    }


def save_costs(up: UpProcess, saves: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"plain": [], "locked": []}
    with up.client() as client:
        for gw in times:
            client.post("/api/v1/gateways", json={"id": gw}).raise_for_status()
        client.put("/api/v1/gateways/locked/dependencies", json={"dependencies": FIVE}).raise_for_status()
        for n in range(saves):
            for gw in times:
                body = {"files": {"index.py": USES % n if gw == "locked" else _plain(n)}}
                start = time.perf_counter()
                client.put(f"/api/v1/gateways/{gw}/functions/dev/f", json=body).raise_for_status()
                times[gw].append(time.perf_counter() - start)
    out = {}
    for gw, values in times.items():
        out[f"{gw}_p50_ms"] = median(values) * 1000
        out[f"{gw}_p99_ms"] = percentile(values, 0.99) * 1000
    return out


def _plain(n: int) -> str:
    return f"def main(ctx):\n    return {{'n': {n}}}\n"


def moves(up: UpProcess, count: int) -> dict[str, float]:
    moved, stayed = [], []
    with up.client() as client, httpx.Client(timeout=10) as runtime:
        client.post("/api/v1/gateways", json={"id": "move"}).raise_for_status()

        def pin(version: str) -> None:
            deps = {"dependencies": [f"fnpkg=={version}"]}
            client.put("/api/v1/gateways/move/dependencies", json=deps).raise_for_status()

        def save_and_wait(n: int, want: str) -> float:
            body = {"files": {"index.py": USES % n}}
            start = time.perf_counter()
            client.put("/api/v1/gateways/move/functions/dev/f", json=body).raise_for_status()
            while True:
                r = runtime.get(f"{up.runtime_url}/f", headers={"Host": "move.dev.localhost"})
                if r.status_code == 200 and r.json() == {"version": want, "n": n}:
                    return time.perf_counter() - start
                time.sleep(0.001)

        pin("1.0")
        save_and_wait(0, "1.0")
        n = 0
        for i in range(count):
            version = "2.0" if i % 2 == 0 else "1.0"
            pin(version)
            n += 1
            moved.append(save_and_wait(n, version))
            n += 1
            stayed.append(save_and_wait(n, version))
    return {"lock_change_p50_ms": median(moved) * 1000, "same_lock_p50_ms": median(stayed) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--pypi", action="store_true", help="also resolve + install 5 packages from PyPI")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fnstage-bench-deps-"))
    root.chmod(0o711)
    wheels = wheelhouse(root / "wheels")
    local = IndexSettings(find_links=(str(wheels),), no_index=True)
    result: dict[str, object] = {"machine": describe()}
    result["local_5"] = install_rounds(FIVE, local, root / "local", args.rounds)
    if args.pypi:
        result["pypi_5"] = install_rounds(PYPI_FIVE, IndexSettings(), root / "pypi", args.rounds)
    up = UpProcess(root / "up", extra_env=offline_env(wheels, root / "up"))
    with up.start(timeout=90):
        result["save"] = save_costs(up, args.saves)
        result["move"] = moves(up, args.moves)
    result["machine_after"] = describe()
    print(json.dumps(result, indent=2))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
