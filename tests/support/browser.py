"""Fixtures and helpers for the console's browser tests (loaded by tests/test_console_*.py through `pytest_plugins`):
Playwright (Python) driving Debian's Chromium against a real `fnstage up` on loopback. Never a
downloaded browser build: `.ci/run` installs /usr/bin/chromium.

Without /usr/bin/chromium these tests skip loudly on a workstation and FAIL under CI (CI=true).
Not a conftest.py, so that only the browser tests load it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from fnstage.testing import CHROMIUM_ARGS, UpProcess

CHROMIUM = Path("/usr/bin/chromium")
# axe-core, the accessibility engine browsers' audit tools use: pinned in console/package.json's
# devDependencies and injected by the tests only; the console's bundle never contains it.
AXE_JS = Path(__file__).resolve().parents[2] / "console" / "node_modules" / "axe-core" / "axe.min.js"

# Screenshots go to a scratch folder so a test run leaves the tree clean; refresh the ones in the docs
# with  FNSTAGE_SCREENSHOTS=docs/screenshots ./scripts/test-long -m browser
SCREENSHOTS = Path(
    os.environ.get("FNSTAGE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "fnstage-screenshots"
)
SCREENSHOTS.mkdir(parents=True, exist_ok=True)

INDEX = (
    "from utils import greet\n\n\n"
    "async def main(ctx):\n"
    '    name = ctx.query.get("name", "world")\n'
    '    ctx.log("greeting", name)\n'
    '    return {"message": greet(name)}\n'
)
UTILS = 'def greet(name):\n    return f"Hello, {name}!"\n'


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def seed(api: httpx.Client, gateway: str, *, released: bool = True) -> None:
    """A gateway with user/me: dev v2 ("Hi"), and (when released) staging 1.0.0-rc.1 and prod 1.0.0
    with the first code ("Hello")."""
    ok(api.post("/gateways", json={"id": gateway}))
    files = {"index.py": INDEX, "utils.py": UTILS}
    ok(api.put(f"/gateways/{gateway}/functions/dev/user/me", json={"files": files, "expected_version": 0}))
    if released:
        promote = {"name": "dev/user/me", "target": "staging", "semver": "1.0.0-rc.1", "note": "QA round 1"}
        ok(api.post(f"/gateways/{gateway}/promote", json=promote))
        promote = {"name": "staging/user/me", "target": "prod", "semver": "1.0.0", "note": "First release"}
        ok(api.post(f"/gateways/{gateway}/promote", json=promote))
    hi = {"index.py": INDEX, "utils.py": UTILS.replace("Hello", "Hi")}
    body = {"files": hi, "expected_version": 1, "semver": "0.2.0", "note": "Say hi"}
    ok(api.put(f"/gateways/{gateway}/functions/dev/user/me", json=body))


# A function whose every request fails with a long message: its cards turn red, the list marks it
FAILING_ERROR = (
    "the greeting service refused the request because the account's quota for this month is spent; "
    "raise the quota in settings or wait for the first of next month"
)
FAILING_INDEX = f'async def main(ctx):\n    raise RuntimeError("{FAILING_ERROR}")\n'


def seed_failing(api: httpx.Client, up: UpProcess, gateway: str, base: str = "user/broken") -> None:
    """`base` saved to dev and promoted to staging, where its requests fail: called until the runtime's
    heartbeat has reported the failures (every 3 s at most)."""
    ok(api.put(f"/gateways/{gateway}/functions/dev/{base}", json={"files": {"index.py": FAILING_INDEX}}))
    promote = {"name": f"dev/{base}", "target": "staging", "semver": "0.1.0-rc.1", "note": "try the quota"}
    ok(api.post(f"/gateways/{gateway}/promote", json=promote))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        httpx.get(f"{up.runtime_url}/{gateway}/staging/{base}", timeout=5)
        listed = ok(api.get(f"/gateways/{gateway}/functions", params={"runtime": "true", "env": "staging"}))
        if any(f["base"] == base and f["runtime"]["errors"] for f in listed["functions"]):
            return
        time.sleep(0.5)
    raise AssertionError(f"the runtime never reported staging/{base}'s failures")


def runtime_answers(up: UpProcess) -> bool:
    try:
        return httpx.get(f"{up.runtime_url}/_fnstage/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def open_console(page: Page, up: UpProcess, hash_path: str = "") -> Page:
    """Open the console already signed in (the token in localStorage, as after signing in)."""
    page.add_init_script(f"localStorage.setItem('fnstage.token', {up.token!r})")
    page.goto(f"{up.url}/{hash_path}")
    return page


def open_function(page: Page, up: UpProcess, gateway: str, base: str = "user/me") -> Page:
    open_console(page, up, f"#/g/{gateway}/f/{base}")
    page.wait_for_selector(".env-card[data-env=dev] .semver")
    page.wait_for_selector(".tab.selected")
    return page


def replace_editor_text(page: Page, text: str) -> None:
    page.locator(".editor .cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(text)


def _missing(reason: str) -> None:
    """Skip loudly on a workstation; fail under CI, which must have everything."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(f"SKIPPING BROWSER TESTS: {reason}")


def axe_violations(page: Page) -> list[str]:
    """Run axe-core on the page as it is now (every rule but the experimental ones) and return one line
    per violation: rule, impact, what it means, and the elements that break it."""
    if not AXE_JS.exists():
        _missing(f"{AXE_JS} is missing: run `npm ci` in console/ (.ci/run does)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=AXE_JS.read_text())
    found = page.evaluate(
        """async () => {
          const result = await axe.run(document, {resultTypes: ['violations']});
          return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help}: ` +
            v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')} [${(n.failureSummary || '').replace(/\\s+/g, ' ')}]`).join('; '));
        }"""
    )
    return list(found)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, for one test module. Playwright's sync API runs an event loop on the main
    thread while it is started, so it is stopped after each module: the asyncio tests that run later
    in the same session could not start their own loops otherwise."""
    if not CHROMIUM.exists():
        _missing(
            "/usr/bin/chromium is missing: the console's browser tests need Debian's Chromium "
            "(apt-get install -y chromium; .ci/run installs it)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture(scope="session")
def console_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with UpProcess(tmp_path_factory.mktemp("console-up")) as process:
        yield process


@pytest.fixture(scope="session")
def console_api(console_up: UpProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{console_up.url}/api/v1",
        headers={"Authorization": f"Bearer {console_up.token}"},
        timeout=30,
    ) as client:
        yield client
