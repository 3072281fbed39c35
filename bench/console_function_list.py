"""The console's function list at scale, in Debian's Chromium against a real `fnstage up`: a gateway of
100 functions and one of 1,000, side by side in one run.

    .venv/bin/python bench/console_function_list.py [--small 100] [--big 1000] [--loads 5]

Each gateway: every function saved to dev, every third promoted to staging, every sixth on to prod
(so 1,000 functions are 1,500 rows of the API's list), one in fifty failing its requests in dev.
Reported, as medians:
- the API's `GET /gateways/GW/functions?runtime=true` (what the page asks for);
- first render, over cold page loads (a fresh browser context each): navigation start to the list's
  `fnstage:functions-rendered` mark, and to `fnstage:functions-painted` (the frame after it);
- the list's own work: the data arriving (`fnstage:functions-loaded`) to rendered;
- per keystroke: one character typed into the search (input event to the next frame painted), over a
  query typed character by character, and clearing the search (every row shown again); beside it an
  idle frame (the same wait with nothing to do), the floor on a busy machine;
- a state filter change (Failing), input to the next frame.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from machine import describe, median
from playwright.sync_api import Page, sync_playwright

from fnstage.testing import CHROMIUM_ARGS, UpProcess

OK = "async def main(ctx):\n    return {'ok': True}\n"
FAILS = "async def main(ctx):\n    raise KeyError('missing setting')\n"
QUERY = "team3/fn-00"  # 10 matches among 100 functions and among 1,000

FIRST_RENDER = """() => {
  const at = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
  return {loaded: at('fnstage:functions-loaded'), rendered: at('fnstage:functions-rendered'),
          painted: at('fnstage:functions-painted'), rows: document.querySelectorAll('.fn-rows li').length};
}"""
# input event -> the next frame painted (a requestAnimationFrame callback, then a task after the paint)
KEYSTROKES = """async (query) => {
  const input = document.querySelector('input[type=search]');
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const idle = [];  // the floor: a frame with nothing to do, on this machine, now
  for (let i = 0; i < query.length; i++) {
    const t0 = performance.now();
    await frame();
    idle.push(performance.now() - t0);
  }
  const typed = [];
  for (const ch of query) {
    const t0 = performance.now();
    input.value += ch;
    input.dispatchEvent(new Event('input', {bubbles: true}));
    await frame();
    typed.push(performance.now() - t0);
  }
  const shown = document.querySelectorAll('.fn-rows li:not([hidden])').length;
  let t0 = performance.now();
  input.value = '';
  input.dispatchEvent(new Event('input', {bubbles: true}));
  await frame();
  const cleared = performance.now() - t0;
  const state = [...document.querySelectorAll('select')]
    .find((s) => s.querySelector('option[value=failing]'));
  t0 = performance.now();
  state.value = 'failing';
  state.dispatchEvent(new Event('change', {bubbles: true}));
  await frame();
  const filtered = performance.now() - t0;
  const failing = document.querySelectorAll('.fn-rows li:not([hidden])').length;
  state.value = '';
  state.dispatchEvent(new Event('change', {bubbles: true}));
  await frame();
  return {idle, typed, shown, cleared, filtered, failing};
}"""


def fill(api: httpx.Client, up: UpProcess, gateway: str, n: int) -> None:
    """n functions: all in dev, every 3rd in staging, every 6th in prod, every 50th failing in dev."""
    api.post("/api/v1/gateways", json={"id": gateway}).raise_for_status()
    names = [f"team{i % 10}/fn-{i:04d}" for i in range(n)]

    def save(i: int) -> None:
        body = {"files": {"index.py": FAILS if i % 50 == 0 else OK}}
        api.put(f"/api/v1/gateways/{gateway}/functions/dev/{names[i]}", json=body).raise_for_status()

    def promote(i: int, source: str, target: str, semver: str) -> None:
        body = {"name": f"{source}/{names[i]}", "target": target, "semver": semver, "note": "bench"}
        api.post(f"/api/v1/gateways/{gateway}/promote", json=body).raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, range(n)))
        list(pool.map(lambda i: promote(i, "dev", "staging", "1.0.0-rc.1"), range(0, n, 3)))
        list(pool.map(lambda i: promote(i, "staging", "prod", "1.0.0"), range(0, n, 6)))
    for i in range(0, n, 50):  # the failing ones answer 500 a few times, counted by the runtime
        for _ in range(3):
            httpx.get(f"{up.runtime_url}/{gateway}/dev/{names[i]}", timeout=10)


def api_time(api: httpx.Client, gateway: str, rounds: int = 5) -> dict[str, Any]:
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        r = api.get(f"/api/v1/gateways/{gateway}/functions", params={"runtime": "true"})
        times.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
        size = len(r.content)
    return {"ms": median(times), "kib": size / 1024, "entries": len(r.json()["functions"])}


def page_load(page: Page, up: UpProcess, gateway: str) -> dict[str, Any]:
    page.goto(f"{up.url}/#/g/{gateway}")
    painted = "performance.getEntriesByName('fnstage:functions-painted').length > 0"
    page.wait_for_function(painted, timeout=60000)
    return dict(page.evaluate(FIRST_RENDER))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--big", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    sizes = {"small": args.small, "big": args.big}
    load_before = describe()["load_average"]
    with tempfile.TemporaryDirectory() as tmp, UpProcess(Path(tmp)).start(timeout=120) as up:
        with httpx.Client(
            base_url=up.url, headers={"Authorization": f"Bearer {up.token}"}, timeout=60
        ) as api:
            started = time.monotonic()
            for gateway, n in sizes.items():
                fill(api, up, gateway, n)
            filled_s = time.monotonic() - started
            time.sleep(4)  # a runtime heartbeat or two: the failures are counted
            apis = {gateway: api_time(api, gateway) for gateway in sizes}
        loads: dict[str, list[dict[str, Any]]] = {g: [] for g in sizes}
        keys: dict[str, list[dict[str, Any]]] = {g: [] for g in sizes}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for i in range(args.loads + 1):
                for gateway in sizes:  # interleaved, so both see the same machine
                    context = browser.new_context(viewport={"width": 1440, "height": 900})
                    context.add_init_script(f"localStorage.setItem('fnstage.token', {json.dumps(up.token)})")
                    page = context.new_page()
                    first = page_load(page, up, gateway)
                    if i:  # the first round warms the server and the browser's cache
                        loads[gateway].append(first)
                        keys[gateway].append(page.evaluate(KEYSTROKES, QUERY))
                    context.close()
            browser.close()

    def summary(gateway: str) -> dict[str, Any]:
        first, typed = loads[gateway], keys[gateway]
        per_key = [t for k in typed for t in k["typed"]]
        return {
            "functions": sizes[gateway],
            "rows_rendered": first[-1]["rows"],
            "api_functions_ms_median": apis[gateway]["ms"],
            "api_entries": apis[gateway]["entries"],
            "api_kib": round(apis[gateway]["kib"], 1),
            "navigation_to_rendered_ms_median": median([f["rendered"] for f in first]),
            "navigation_to_painted_ms_median": median([f["painted"] for f in first]),
            "data_to_rendered_ms_median": median([f["rendered"] - f["loaded"] for f in first]),
            "idle_frame_ms_median": median([t for k in typed for t in k["idle"]]),
            "keystroke_ms_median": median(per_key),
            "keystroke_ms_max": max(per_key),
            "clear_search_ms_median": median([k["cleared"] for k in typed]),
            "state_filter_ms_median": median([k["filtered"] for k in typed]),
            "rows_matching_query": typed[-1]["shown"],
            "rows_failing": typed[-1]["failing"],
        }

    small, big = summary("small"), summary("big")
    ratios = {key: round(big[key] / small[key], 2) for key in small if key.endswith("_median") and small[key]}
    print(
        json.dumps(
            {
                "loads": args.loads,
                "query": QUERY,
                "fill_seconds": round(filled_s, 1),
                "small": small,
                "big": big,
                "ratio_big_to_small": ratios,
                "load_average_before": load_before,
                "machine": describe(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
