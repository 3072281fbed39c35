"""The console's members and tokens page: add a member, change their role, remove them; create a token
(its secret shown once, and it works), see when it was last used, revoke it (and it stops working)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Page, expect

from fnstage.testing import UpProcess

pytest.register_assert_rewrite("support.browser")  # before its import: pytest_plugins loads it too
from support.browser import open_console  # noqa: E402

pytest_plugins = ["support.browser"]  # the browser fixtures: Chromium, a real fnstage up
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.long]


def test_members_are_added_changed_and_removed(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    assert console_api.post("/gateways", json={"id": "team"}).status_code == 201
    assert console_api.post("/users", json={"name": "grace"}).status_code == 201
    open_console(page, console_up, "#/g/team")
    page.get_by_role("link", name="Members and tokens").click()
    members = page.locator("section", has=page.get_by_role("heading", name="Members"))
    expect(members.locator("tr[data-user=admin]")).to_contain_text("admin")

    page.get_by_label("User").fill("grace")
    page.get_by_label("Role", exact=True).select_option("developer")
    page.get_by_role("button", name="Add or change").click()
    expect(members.locator("tr[data-user=grace]")).to_be_visible()
    assert _roles(console_api, "team") == {"admin": "owner", "grace": "developer"}

    page.get_by_label("Role of grace").select_option("releaser")
    expect(page.get_by_label("Role of grace")).to_have_value("releaser")
    _eventually_equal(lambda: _roles(console_api, "team").get("grace"), "releaser")

    page.once("dialog", lambda dialog: dialog.accept())
    members.locator("tr[data-user=grace]").get_by_role("button", name="Remove").click()
    expect(members.locator("tr[data-user=grace]")).to_have_count(0)
    assert _roles(console_api, "team") == {"admin": "owner"}

    page.get_by_label("User").fill("nobody")
    page.get_by_role("button", name="Add or change").click()
    expect(members.get_by_role("alert")).to_contain_text("nobody")  # the API's own words


def test_a_token_is_shown_once_works_and_stops_working_when_revoked(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    assert console_api.post("/gateways", json={"id": "tokens"}).status_code == 201
    open_console(page, console_up, "#/g/tokens/access")
    tokens = page.locator("section", has=page.get_by_role("heading", name="Your API tokens"))
    page.get_by_label("Name", exact=True).fill("ci-robot")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("token-secret").inner_text()
    assert secret.startswith("fns_")
    row = tokens.locator("tr[data-token=ci-robot]")
    expect(row).to_contain_text("never")  # not used yet
    expect(row).to_contain_text("active")

    me = httpx.get(f"{console_up.url}/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["name"] == "admin"
    page.reload()
    expect(tokens.locator("tr[data-token=ci-robot]")).to_contain_text("just now")  # last used

    page.once("dialog", lambda dialog: dialog.accept())
    tokens.locator("tr[data-token=ci-robot]").get_by_role("button", name="Revoke").click()
    expect(tokens.locator("tr[data-token=ci-robot]")).to_contain_text("revoked")
    refused = httpx.get(f"{console_up.url}/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401


def _roles(api: httpx.Client, gateway: str) -> dict[str, str]:
    return {m["user"]: m["role"] for m in api.get(f"/gateways/{gateway}/members").json()["members"]}


def _eventually_equal(read: Callable[[], object], expected: object, timeout: float = 5.0) -> None:
    """The console sends a role change when the select changes; the API has it a moment later."""
    deadline = time.monotonic() + timeout
    while read() != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read() == expected
