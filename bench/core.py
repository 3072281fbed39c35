"""Core benchmarks: save latency, rollback latency, history storage. Results go to BENCHMARKS.md.

    .venv/bin/python bench/core.py [--saves 200] [--history-saves 1000]

Save and rollback are measured through the HTTP API of a real `fnstage up` process on loopback (SQLite
in a temporary folder): the time from sending the request to the response that says it committed.
Storage is measured in a database of its own after 1,000 saves of a 20-file function (whole stdlib
modules, 2-8 KB each) that change one file each time, with the history limit raised so every entry is
kept; the file size is taken after a WAL checkpoint and VACUUM.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import httpx
from machine import describe, percentile
from sqlalchemy import text
from stores import bench_admin

from fnstage.service import Services
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store
from fnstage.testing import UpProcess

sys.path.insert(0, str(Path(__file__).parent))

INDEX = (
    "from utils import greet\n\n\nasync def main(ctx):\n"
    "    return {'message': greet(ctx.query.get('name', 'world'))}\n"
)
UTILS = "from helpers import shout\n\n\ndef greet(name):\n    return shout(f'Hello, {name}! #{N}')\n"
HELPERS = "def shout(text):\n    return text.upper()\n"


def stdlib_sources(count: int) -> list[str]:
    """Real Python source: whole stdlib modules of 2 to 8 KB that build on their own."""
    from fnstage.build import build

    lib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(lib.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if 2000 <= len(source.encode()) <= 8000:
            try:
                build({"m.py": source, "index.py": "def main(ctx):\n    return 1\n"}, "index.py", [])
            except Exception:
                continue
            texts.append(source)
        if len(texts) == count:
            return texts
    raise RuntimeError("not enough stdlib modules")


def bench_save_and_rollback(client: httpx.Client, saves: int) -> dict[str, float]:
    base = "/api/v1/gateways/bench"
    latencies = []
    for i in range(saves):
        files = {"index.py": INDEX, "utils.py": UTILS.replace("{N}", str(i)), "helpers.py": HELPERS}
        started = time.perf_counter()
        r = client.put(f"{base}/functions/dev/user/me", json={"files": files, "changelog": f"save {i}"})
        latencies.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
    client.post(
        f"{base}/promote",
        json={"name": "dev/user/me", "target": "staging", "semver": "1.0.0-rc.1", "note": "qa"},
    ).raise_for_status()
    client.post(
        f"{base}/promote", json={"name": "staging/user/me", "target": "prod", "semver": "1.0.0", "note": "go"}
    ).raise_for_status()
    rollbacks = []
    semver = [1, 0, 0]
    good = "1.0.0"
    for i in range(50):
        client.put(
            f"{base}/functions/dev/user/me",
            json={
                "files": {
                    "index.py": INDEX,
                    "utils.py": UTILS.replace("{N}", f"bad{i}"),
                    "helpers.py": HELPERS,
                }
            },
        ).raise_for_status()
        semver[2] += 1
        client.post(
            f"{base}/release",
            json={
                "base": "user/me",
                "source_env": "dev",
                "target": "prod",
                "semver": ".".join(map(str, semver)),
                "note": "bad",
            },
        ).raise_for_status()
        semver[2] += 1
        started = time.perf_counter()
        r = client.post(
            f"{base}/rollback",
            json={
                "name": "prod/user/me",
                "to_semver": good,
                "semver": ".".join(map(str, semver)),
                "note": "back",
            },
        )
        rollbacks.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
        good = ".".join(map(str, semver))
    return {
        "save_p50_ms": statistics.median(latencies),
        "save_p99_ms": percentile(latencies, 0.99),
        "rollback_p50_ms": statistics.median(rollbacks),
        "rollback_p99_ms": percentile(rollbacks, 0.99),
    }


def bench_history_storage(root: Path, saves: int) -> dict[str, float]:
    store = Store.open(sqlite_url(root))
    services = Services.create(store)
    actor = bench_admin(store)
    services.gateways.create(actor, "storage")
    services.gateways.update("storage", history_limit=saves)
    sources = stdlib_sources(19)
    files = {f"mod{i:02d}.py": src for i, src in enumerate(sources)}
    files["index.py"] = "def main(ctx):\n    return 'ok'\n"
    distinct: set[str] = set(files.values())
    services.deployments.save(actor, "storage", "dev/big", files)
    paths = sorted(p for p in files if p != "index.py")
    for i in range(1, saves):
        path = paths[i % len(paths)]
        files[path] = files[path] + f"\nCHANGE_{i} = {i}\n"
        distinct.add(files[path])
        services.deployments.save(actor, "storage", "dev/big", files)
    distinct_bytes = sum(len(t.encode()) for t in distinct)
    with store.read() as tx:

        def scalar(sql: str) -> int:
            return int(tx.conn.execute(text(sql)).scalar() or 0)

        blob_bytes = scalar("select sum(length(content)) from blobs")
        entries = scalar("select count(*) from history")
        manifest_bytes = scalar("select sum(length(files)) from history")
    store.close()
    db = root / "fnstage.db"
    conn = sqlite3.connect(db)
    conn.execute("vacuum")  # in WAL mode the compacted copy goes through the WAL: checkpoint after
    conn.execute("pragma wal_checkpoint(truncate)")
    history_pages = conn.execute(
        "select sum(pgsize) from dbstat where name in ('blobs', 'history') or name like '%history%'"
        " or name = 'sqlite_autoindex_blobs_1'"
    ).fetchone()[0]
    conn.close()
    db_bytes = sum(p.stat().st_size for p in root.glob("fnstage.db*"))
    return {
        "history_entries": entries,
        "distinct_content_bytes": distinct_bytes,
        "blob_bytes_zlib": blob_bytes,
        "manifest_bytes": manifest_bytes,
        "history_and_blob_pages_bytes": history_pages,
        "db_file_bytes_after_vacuum": db_bytes,
        "ratio_history_pages_to_distinct": history_pages / distinct_bytes,
        "ratio_db_file_to_distinct": db_bytes / distinct_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--history-saves", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        with UpProcess(Path(tmp) / "up") as up, up.client() as client:
            client.post(
                "/api/v1/gateways", json={"id": "bench", "allow_dev_to_prod": True}
            ).raise_for_status()
            results.update(bench_save_and_rollback(client, args.saves))
        storage = Path(tmp) / "storage"
        storage.mkdir()
        results.update(bench_history_storage(storage, args.history_saves))
    results["machine"] = describe()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
