"""CLI start-up: wall and CPU time of `fnstage --help`, `fnstage status --json` and an unchanged
`fnstage push`, each run N times as a fresh process (#17 item 2: <= 100 ms each).

    .venv/bin/python bench/cli_startup.py [--runs 15] [--baseline SRC[:DIR...]] [--port 41400]

`fnstage up` (SQLite, no runtime) runs on --port with a data folder in /tmp; a function is pushed once,
then every command is timed against it. `--baseline SRC` compares with another checkout's `src`
(e.g. `git worktree add /tmp/before main`): its `fnstage` comes first on PYTHONPATH, and the two
alternate run by run (baseline, this, baseline, this, ...) so both see the same load. More folders
after a `:` come next on that PYTHONPATH: the packages the baseline pinned where they differ from this
venv's (e.g. typer 0.29.1 unpacked from its wheel). CPU time is the child's user + system time (less
noisy than wall time on a loaded machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fnstage.testing import UpProcess

COMMANDS = {
    "--help": ["--help"],
    "status --json": ["status", "user/me", "--json"],
    "push (unchanged)": ["push", "{dir}", "dev/user/me"],
}


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one run of `python -m fnstage ARGS`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fnstage", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--baseline", help="another checkout's src folder, then any folders of its own pins (PATH:PATH)"
    )
    parser.add_argument("--port", type=int, default=41400, help="the API's port (and +1, unused)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-startup-", dir="/tmp") as tmp:
        root = Path(tmp)
        up = UpProcess(root, with_runtime=False)
        up.port, up.runtime_port = options.port, options.port + 1
        up.url = f"http://127.0.0.1:{up.port}"
        up.start()
        try:
            env = {**up.env, "FNSTAGE_URL": up.url, "FNSTAGE_GATEWAY": "bench", "COLUMNS": "80"}
            function = root / "me"
            function.mkdir()
            (function / "index.py").write_text("def main(ctx):\n    return {'ok': True}\n")
            subprocess.run(
                [sys.executable, "-m", "fnstage", "gateway", "create", "bench"], env=env, check=True
            )
            subprocess.run(
                [sys.executable, "-m", "fnstage", "push", str(function), "dev/user/me"], env=env, check=True
            )
            sides = {"this": env}
            if options.baseline:
                path = os.pathsep.join(str(Path(p).resolve()) for p in options.baseline.split(os.pathsep))
                sides = {"baseline": {**env, "PYTHONPATH": path}, **sides}
            results: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for _ in range(options.runs):
                for label, args in COMMANDS.items():
                    for side, side_env in sides.items():
                        runs = results.setdefault((label, side), [])
                        runs.append(timed([a.format(dir=function) for a in args], side_env))
        finally:
            up.stop()
    print(f"{options.runs} runs each, load {os.getloadavg()[0]:.1f}; medians")
    print(f"{'command':<18} {'side':<9} {'wall ms':>8} {'CPU ms':>7}")
    medians: dict[tuple[str, str], tuple[float, float]] = {}
    for (label, side), runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        medians[label, side] = (wall, cpu)
        print(f"{label:<18} {side:<9} {wall:8.1f} {cpu:7.1f}")
        if side == "this" and (label, "baseline") in medians:
            base_wall, base_cpu = medians[label, "baseline"]
            ratios = f"{wall / base_wall:7.2f}x {cpu / base_cpu:6.2f}x"
            print(f"{label:<18} {'ratio':<9} {ratios}  (this / baseline)")


if __name__ == "__main__":
    main()
