"""The save PUT of two builds of fnstage side by side: two `fnstage up` on loopback at once (this
checkout, and another's `src` given by --base-src, e.g. a `git worktree` of main), saves sent to each
in turn, so both see the same machine load. Medians and the ratio go to BENCHMARKS.md.

    .venv/bin/python bench/save_side_by_side.py --base-src /tmp/wt-base/src [--saves 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from core import HELPERS, INDEX, UTILS
from machine import describe, percentile

from fnstage.testing import UpProcess

SAVE = "/api/v1/gateways/bench/functions/dev/user/me"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-src", required=True, help="the other build's src folder")
    parser.add_argument("--saves", type=int, default=300)
    args = parser.parse_args()
    timings: dict[str, list[float]] = {"base": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = UpProcess(Path(tmp) / "base", extra_env={"PYTHONPATH": args.base_src})
        this = UpProcess(Path(tmp) / "this")
        with base.start(timeout=120), this.start(timeout=120), base.client() as b, this.client() as t:
            clients = {"base": b, "this": t}
            typed = {}  # which build is which: only a build with response models documents `Saved`
            for name, client in clients.items():
                client.post("/api/v1/gateways", json={"id": "bench"}).raise_for_status()
                schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
                typed[name] = "Saved" in schemas
            for i in range(args.saves):
                files = {"index.py": INDEX, "utils.py": UTILS.replace("{N}", str(i)), "helpers.py": HELPERS}
                order = ("base", "this") if i % 2 else ("this", "base")
                for name in order:
                    started = time.perf_counter()
                    r = clients[name].put(
                        "/api/v1/gateways/bench/functions/dev/user/me",
                        json={"files": files, "changelog": f"{i}"},
                    )
                    timings[name].append((time.perf_counter() - started) * 1000)
                    r.raise_for_status()
    p50 = {name: statistics.median(ms) for name, ms in timings.items()}
    print(
        json.dumps(
            {
                "save_p50_ms": {k: round(v, 2) for k, v in p50.items()},
                "save_p99_ms": {k: round(percentile(v, 0.99), 2) for k, v in timings.items()},
                "ratio_p50_this_to_base": round(p50["this"] / p50["base"], 3),
                "saves_each": args.saves,
                "typed_responses": typed,
                "machine": describe(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
