"""First paint of the console's function page, in Debian's Chromium against a real `fnstage up`.

    .venv/bin/python bench/console_first_paint.py [--loads 10]

Reports the median over cold page loads (a fresh browser context each) of first contentful paint and
of the page's own `fnstage:function-page-ready` mark (cards and editor shown), plus bytes decoded.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from machine import describe, median
from playwright.sync_api import sync_playwright

from fnstage.testing import CHROMIUM_ARGS, UpProcess

FILES = {
    "index.py": "from utils import greet\n\nasync def main(ctx):\n    return greet('x')\n",
    "utils.py": "def greet(name):\n    return f'Hello, {name}!'\n",
}
TIMING = """() => {
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const ready = performance.getEntriesByName('fnstage:function-page-ready')[0];
  const bytes = performance.getEntriesByType('resource').reduce((n, r) => n + (r.decodedBodySize || 0), 0);
  return {fcp: fcp ? fcp.startTime : null, ready: ready ? ready.startTime : null, bytes};
}"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, UpProcess(Path(tmp)) as up:
        with up.client() as api:
            api.post("/api/v1/gateways", json={"id": "paint"}).raise_for_status()
            api.put("/api/v1/gateways/paint/functions/dev/user/me", json={"files": FILES}).raise_for_status()
        samples = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for i in range(args.loads + 1):
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                context.add_init_script(f"localStorage.setItem('fnstage.token', {json.dumps(up.token)})")
                page = context.new_page()
                page.goto(f"{up.url}/#/g/paint/f/user/me")
                # both entries: the paint one can be recorded after the page's own mark (it was read as
                # missing in about one load in ten, which failed the whole run)
                page.wait_for_function(
                    "performance.getEntriesByName('fnstage:function-page-ready').length > 0"
                    " && performance.getEntriesByName('first-contentful-paint').length > 0"
                )
                if i:  # the first load warms the server
                    samples.append(page.evaluate(TIMING))
                context.close()
            browser.close()
    print(
        json.dumps(
            {
                "loads": len(samples),
                "first_contentful_paint_ms_median": median([s["fcp"] for s in samples]),
                "function_page_ready_ms_median": median([s["ready"] for s in samples]),
                "decoded_kib": samples[-1]["bytes"] / 1024,
                "machine": describe(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
