"""The console's configuration page and the release sheet's required keys: a setting is set and unset,
a secret is set (and masked: its value never comes back into the page), a version is rolled back; the
release sheet names the keys the target lacks, and then that it has them."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from fnstage.testing import UpProcess

pytest.register_assert_rewrite("support.browser")  # before its import: pytest_plugins loads it too
from support.browser import ok, open_console, open_function  # noqa: E402

pytest_plugins = ["support.browser"]  # the browser fixtures: Chromium, a real fnstage up
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.long]

SECRET = "sk_live_console_5e1f2a"
NEEDS = 'CONFIG = ["DATABASE_URL"]\nSECRETS = ["STRIPE_KEY"]\n\n\ndef main(ctx):\n    return "ok"\n'


def test_settings_and_secrets_are_set_masked_and_rolled_back(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    assert console_api.post("/gateways", json={"id": "cfg"}).status_code == 201
    open_console(page, console_up, "#/g/cfg")
    page.get_by_role("link", name="Configuration and secrets").click()
    page.get_by_role("link", name="Prod").click()
    expect(page.get_by_role("heading", name="Configuration: prod")).to_be_visible()

    settings = page.locator("section", has=page.get_by_role("heading", name="Settings"))
    settings.get_by_label("Key", exact=True).fill("DATABASE_URL")
    settings.get_by_label("Value", exact=True).fill("postgresql://prod-db/app")
    settings.get_by_role("button", name="Set", exact=True).click()
    expect(settings.locator("tr[data-key=DATABASE_URL]")).to_contain_text("postgresql://prod-db/app")

    secrets = page.locator("section", has=page.get_by_role("heading", name="Secrets"))
    secrets.get_by_label("Key", exact=True).fill("STRIPE_KEY")
    secrets.get_by_label("Value", exact=True).fill(SECRET)
    secrets.get_by_role("button", name="Set secret").click()
    row = secrets.locator("tr[data-key=STRIPE_KEY]")
    expect(row).to_contain_text("••••")
    expect(row).to_contain_text("by admin")
    assert secrets.get_by_label("Value", exact=True).input_value() == ""  # out of the form at once
    page.reload()
    expect(secrets.locator("tr[data-key=STRIPE_KEY]")).to_be_visible()
    assert SECRET not in page.content()

    history = page.locator("section", has=page.get_by_role("heading", name="History"))
    expect(history.locator("tr[data-version]")).to_have_count(2)
    page.once("dialog", lambda dialog: dialog.accept())
    history.get_by_role("button", name="Roll back to version 1").click()
    expect(history.locator("tr[data-version]")).to_have_count(3)
    expect(secrets.locator("tr[data-key=STRIPE_KEY]")).to_have_count(0)
    view = console_api.get("/gateways/cfg/config/prod").json()
    assert view["version"] == 3 and view["secrets"] == []


def test_a_setting_typed_while_the_last_one_is_set_is_kept(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    """The first Set's answer is held back; the user types the next setting meanwhile. The answer used to
    empty the form, so what they typed was lost."""
    ok(console_api.post("/gateways", json={"id": "cfgtyping"}))
    held: list[Route] = []
    page.route(
        "**/gateways/cfgtyping/config/dev",
        lambda route: (
            held.append(route) if route.request.method == "PATCH" and not held else route.continue_()
        ),
    )
    open_console(page, console_up, "#/g/cfgtyping/config/dev")
    settings = page.locator("section", has=page.get_by_role("heading", name="Settings"))
    expect(settings).to_contain_text("No settings.")
    key, value = settings.get_by_label("Key", exact=True), settings.get_by_label("Value", exact=True)
    key.fill("DATABASE_URL")
    value.fill("postgresql://dev-db/app")
    settings.get_by_role("button", name="Set", exact=True).click()
    for _ in range(50):  # the PATCH is on its way, and held
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "Set never sent its PATCH"
    key.fill("CACHE_URL")  # typed while the first one is set
    value.fill("redis://dev-cache")
    held[0].continue_()
    expect(settings.locator("tr[data-key=DATABASE_URL]")).to_contain_text("postgresql://dev-db/app")
    expect(key).to_have_value("CACHE_URL")
    expect(value).to_have_value("redis://dev-cache")

    settings.get_by_role("button", name="Set", exact=True).click()  # unhindered, the form empties once set
    expect(settings.locator("tr[data-key=CACHE_URL]")).to_contain_text("redis://dev-cache")
    expect(key).to_have_value("")
    expect(value).to_have_value("")


def test_the_release_sheet_shows_which_required_keys_the_target_has(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    assert console_api.post("/gateways", json={"id": "needs"}).status_code == 201
    saved = console_api.put("/gateways/needs/functions/dev/user/me", json={"files": {"index.py": NEEDS}})
    assert saved.status_code == 201, saved.text
    assert console_api.patch("/gateways/needs/config/staging", json={"set": {"DATABASE_URL": "x"}}).is_success
    open_function(page, console_up, "needs")
    page.locator(".env-card[data-env=dev]").get_by_role("button", name="Release from dev").click()
    sheet = page.get_by_role("dialog", name="Release user/me")
    needs = sheet.locator(".required-keys")
    expect(needs.locator("li[data-key=DATABASE_URL]")).to_contain_text("set in staging")
    expect(needs.locator("li[data-key=STRIPE_KEY]")).to_contain_text("missing in staging")
    expect(needs.get_by_role("alert")).to_contain_text("secret STRIPE_KEY")
