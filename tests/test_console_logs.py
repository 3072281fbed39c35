"""The console's logs sheet: a function's invocations from the durable log, live (a new invocation
appears without reloading), errors only, and a request id opening its traceback."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from fnstage.testing import UpProcess

pytest.register_assert_rewrite("conftest_browser")
from conftest_browser import ok, open_function  # noqa: E402

pytest_plugins = ["conftest_browser"]
pytestmark = [pytest.mark.browser, pytest.mark.e2e]

FUNCTION = "def main(ctx):\n    ctx.log('serving', ctx.query.get('n'))\n    if ctx.query.get('fail'):\n        raise KeyError('no such thing')\n    return 'ok'\n"


def test_logs_show_live_and_a_request_id_opens_its_traceback(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    ok(console_api.post("/gateways", json={"id": "logged"}))
    ok(console_api.put("/gateways/logged/functions/dev/user/me", json={"files": {"index.py": FUNCTION}}))
    host = {"Host": "logged.dev.localhost"}

    def call(query: str) -> httpx.Response:
        deadline = time.monotonic() + 15
        while True:  # until it is live
            r = httpx.get(f"{console_up.runtime_url}/user/me{query}", headers=host, timeout=10)
            if r.status_code != 404 or time.monotonic() > deadline:
                return r

    assert call("?n=1").status_code == 200
    failed = call("?n=2&fail=1")
    assert failed.status_code == 500
    open_function(page, console_up, "logged")
    page.get_by_role("button", name="Logs", exact=True).click()
    entries = page.locator(".logs-entry")
    expect(entries).to_have_count(2, timeout=15_000)
    rid = failed.headers["x-request-id"]
    failing = page.locator(f".logs-entry[data-request-id='{rid}']")
    expect(failing).to_contain_text("500")
    failing.get_by_role("button", name=rid).click()
    expect(failing.locator("pre")).to_contain_text("serving 2")
    expect(failing.locator("pre")).to_contain_text("KeyError")
    expect(failing.locator("pre")).to_contain_text("Traceback")
    # live: a new invocation shows up without reloading
    fresh = call("?n=3").headers["x-request-id"]
    expect(page.locator(f".logs-entry[data-request-id='{fresh}']")).to_be_visible(timeout=10_000)
    expect(entries.first).to_have_attribute("data-request-id", fresh)
    page.get_by_label("Errors only").check()
    expect(entries).to_have_count(1)
    expect(entries.first).to_have_attribute("data-request-id", rid)
