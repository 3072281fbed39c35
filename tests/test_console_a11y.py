"""The console checked by axe-core, the accessibility engine browsers' audit tools use: every page and
sheet, in the light and the dark theme (the system setting picks one), with zero violations of any
impact. A new violation fails the test with the rule, the elements and what to fix."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from fnstage.testing import UpProcess

pytest.register_assert_rewrite("support.browser")  # before its import: pytest_plugins loads it too
from support.browser import (  # noqa: E402
    SCREENSHOTS,
    axe_violations,
    open_function,
    replace_editor_text,
    seed,
    seed_failing,
)

pytest_plugins = ["support.browser"]  # the browser fixtures: Chromium, a real fnstage up
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.long]


@pytest.fixture(scope="module")
def audited(console_up: UpProcess, console_api: httpx.Client) -> str:
    """A gateway with a released function and one whose staging version fails its requests."""
    seed(console_api, "audit")
    seed_failing(console_api, console_up, "audit")
    return "audit"


@pytest.fixture(params=["light", "dark"])
def themed_page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    """A page whose system colour scheme is light or dark; no motion, so no colour is read mid-fade."""
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, color_scheme=request.param, reduced_motion="reduce"
    )
    yield context.new_page()
    context.close()


def test_every_page_and_sheet_has_no_violations(
    themed_page: Page, console_up: UpProcess, console_api: httpx.Client, audited: str
) -> None:
    page = themed_page
    found: dict[str, list[str]] = {}

    def audit(what: str) -> None:
        found[what] = axe_violations(page)

    page.goto(f"{console_up.url}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    audit("sign-in")
    page.get_by_label("API token").fill("fns_not_a_token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown token")
    audit("sign-in refused")
    page.get_by_label("API token").fill(console_up.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    page.goto(f"{console_up.url}/#/g/{audited}")
    expect(page.locator(".fn-row")).to_have_count(2)
    expect(page.locator(".fn-row.failing")).to_have_count(1)
    audit("gateway")
    page.get_by_label("Search functions").fill("no such function")
    expect(page.get_by_role("status").filter(has_text="of 2 functions")).to_contain_text("0 of 2")
    audit("gateway, nothing matches")
    page.get_by_label("Gateway", exact=True).select_option("__new__")
    expect(page.get_by_role("dialog", name="New gateway")).to_be_visible()
    audit("new gateway sheet")
    page.keyboard.press("Escape")

    open_function(page, console_up, audited, "user/broken")
    expect(page.locator(".env-card[data-env=staging] .runtime-state")).to_contain_text("requests failed")
    audit("function page, failing in staging")

    open_function(page, console_up, audited)
    audit("function page")
    theme = "dark" if page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") else "light"
    if theme == "dark":  # the light one is test_console_release's function-page.png
        page.screenshot(path=str(SCREENSHOTS / "function-page-dark.png"))
    replace_editor_text(page, "def main(:\n")
    page.keyboard.press("Control+s")
    expect(page.locator(".problems")).to_contain_text("Build failed")
    audit("function page, build error")
    page.keyboard.press("Control+z")

    page.locator(".env-card[data-env=dev]").get_by_role("button", name="Release from dev").click()
    sheet = page.get_by_role("dialog", name="Release user/me")
    expect(sheet.locator(".diff-file[data-path='utils.py'] .cm-merge-b .cm-changedLine")).to_be_visible()
    audit("release sheet")
    sheet.get_by_label("New semver").fill("0.0.1")
    expect(sheet.locator(".hint.field-error")).to_be_visible()
    audit("release sheet, invalid semver")
    page.keyboard.press("Escape")

    page.locator(".env-card[data-env=prod]").get_by_role("button", name="History of prod").click()
    history = page.get_by_role("dialog", name="History of user/me")
    history.get_by_label("Dev", exact=True).check(force=True)
    history.locator("tbody tr").nth(1).get_by_role("button", name="Diff").click()
    expect(history.locator(".diff-file .cm-merge-b")).not_to_have_count(0)
    audit("history sheet with a diff")
    page.keyboard.press("Escape")

    for _ in range(100):  # an invocation of dev's user/me, for the sheet's list and charts
        if httpx.get(f"{console_up.runtime_url}/{audited}/dev/user/me", timeout=10).status_code == 200:
            break
        time.sleep(0.1)
    for _ in range(100):  # ... written to the durable log, which the charts read
        logged = console_api.get(f"/gateways/{audited}/logs/dev/user/me").json()["invocations"]
        if any(e.get("id") for e in logged):
            break
        time.sleep(0.1)
    page.get_by_role("button", name="Logs", exact=True).click()
    logs = page.get_by_role("dialog", name="Logs of user/me")
    expect(logs.locator(".logs-entry").first).to_be_visible(timeout=15_000)
    expect(logs.locator(".chart canvas")).to_have_count(2)
    audit("logs sheet with its charts")
    page.keyboard.press("Escape")

    page.goto(f"{console_up.url}/#/g/{audited}/access")
    expect(page.locator("tr[data-user=admin]")).to_be_visible()
    page.get_by_label("Name", exact=True).fill(f"audit-{time.monotonic_ns()}")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("token-secret")).to_be_visible()
    audit("members and tokens")
    if theme == "light":
        page.screenshot(path=str(SCREENSHOTS / "members-and-tokens.png"))

    page.goto(f"{console_up.url}/#/g/{audited}/config/prod")
    expect(page.get_by_role("heading", name="Configuration: prod")).to_be_visible()
    secrets = page.locator("section", has=page.get_by_role("heading", name="Secrets"))
    secrets.get_by_label("Key", exact=True).fill("STRIPE_KEY")
    secrets.get_by_label("Value", exact=True).fill("sk_audit")
    secrets.get_by_role("button", name="Set secret").click()
    expect(secrets.locator("tr[data-key=STRIPE_KEY]")).to_be_visible()
    audit("configuration page")
    if theme == "light":
        page.screenshot(path=str(SCREENSHOTS / "configuration-page.png"))

    page.goto(f"{console_up.url}/#/g/{audited}/deps")
    expect(page.get_by_role("heading", name="Dependencies", exact=True)).to_be_visible()
    requirements = page.locator("section", has=page.get_by_role("heading", name="Requirements"))
    requirements.get_by_label("Requirement", exact=True).fill("fnpkg==1.0")
    requirements.get_by_role("button", name="Add").click()
    expect(page.locator("tr[data-package=fnpkg]")).to_be_visible()
    requirements.get_by_label("Requirement", exact=True).fill("fnpkg==9.9")  # refused: the resolver's text
    requirements.get_by_role("button", name="Add").click()
    expect(requirements.get_by_role("alert")).to_contain_text("cannot be resolved")
    page.get_by_text("The lock, with hashes").click()
    audit("dependencies page, with a refusal and the lock open")
    if theme == "light":
        page.screenshot(path=str(SCREENSHOTS / "dependencies-page.png"))

    failures = {what: v for what, v in found.items() if v}
    assert not failures, "axe-core violations:\n" + "\n".join(
        f"- {what}: {line}" for what, lines in failures.items() for line in lines
    )
