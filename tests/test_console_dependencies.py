"""The console's Dependencies page and where a lock shows elsewhere: requirements are added, replaced,
removed and set, the resolved lock is listed with versions, a requirement the resolver refuses shows its
words and changes nothing; history entries name their lock, and the release sheet lists the packages a
release changes. Packages come from the session's folder of wheels (conftest), never the internet."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from fnstage.testing import UpProcess

pytest.register_assert_rewrite("support.browser")  # before its import: pytest_plugins loads it too
from support.browser import ok, open_console, open_function  # noqa: E402

pytest_plugins = ["support.browser"]  # the browser fixtures: Chromium, a real fnstage up
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.long]

USES_FNPKG = "import fnpkg\n\n\ndef main(ctx):\n    return {'version': fnpkg.__version__}\n"


def test_requirements_are_changed_on_the_page_and_the_lock_is_shown(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    ok(console_api.post("/gateways", json={"id": "pins"}))
    open_console(page, console_up, "#/g/pins")
    page.get_by_role("link", name="Dependencies").click()
    expect(page.get_by_role("heading", name="Dependencies", exact=True)).to_be_visible()
    requirements = page.locator("section", has=page.get_by_role("heading", name="Requirements"))
    lock = page.locator("section", has=page.get_by_role("heading", name="Lock"))
    expect(requirements).to_contain_text("No requirements.")

    requirements.get_by_label("Requirement", exact=True).fill("fnpkg==1.0")
    requirements.get_by_role("button", name="Add").click()
    expect(lock.locator("tr[data-package=fnpkg]")).to_contain_text("1.0")
    expect(requirements.locator("tr[data-requirement=fnpkg]")).to_contain_text("fnpkg==1.0")
    assert requirements.get_by_label("Requirement", exact=True).input_value() == ""

    # the same package again replaces its requirement; another one is added beside it
    requirements.get_by_label("Requirement", exact=True).fill("fnpkg==2.0")
    requirements.get_by_role("button", name="Add").click()
    expect(lock.locator("tr[data-package=fnpkg]")).to_contain_text("2.0")
    requirements.get_by_label("Requirement", exact=True).fill("Native-Thing")
    requirements.get_by_role("button", name="Add").click()
    expect(lock.locator("tr[data-package=native-thing]")).to_contain_text("1.0")
    expect(requirements.locator("tr[data-requirement]")).to_have_count(2)
    lock.get_by_text("The lock, with hashes").click()
    expect(lock.locator("pre")).to_contain_text("--hash=sha256:")

    # refused: the resolver's words on the page, and nothing changes
    requirements.get_by_label("Requirement", exact=True).fill("fnpkg==9.9")
    requirements.get_by_role("button", name="Add").click()
    alert = requirements.get_by_role("alert")
    expect(alert).to_contain_text("cannot be resolved, and nothing changed")
    expect(alert).to_contain_text("fnpkg")
    expect(lock.locator("tr[data-package=fnpkg]")).to_contain_text("2.0")
    assert console_api.get("/gateways/pins/dependencies").json()["dependencies"] == [
        "fnpkg==2.0",
        "native-thing",
    ]

    requirements.get_by_role("button", name="Remove native-thing").click()
    expect(requirements.locator("tr[data-requirement]")).to_have_count(1)
    expect(requirements.locator(".deps-error")).to_be_empty()  # the refusal is gone with the change
    expect(lock.locator("tr[data-package=native-thing]")).to_have_count(0)

    requirements.get_by_label("All requirements, one a line").fill("fnpkg==1.0\nnative-thing==1.0\n")
    requirements.get_by_role("button", name="Set all").click()
    expect(lock.locator("tr[data-package]")).to_have_count(2)
    expect(lock.locator("tr[data-package=fnpkg]")).to_contain_text("1.0")
    assert console_api.get("/gateways/pins/dependencies").json()["dependencies"] == [
        "fnpkg==1.0",
        "native-thing==1.0",
    ]


def test_a_requirement_typed_while_the_last_one_installs_is_kept(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    """The first Add's answer is held back (an install that takes a while); the user types the next
    requirement meanwhile. The answer used to clear the field, so the next Add sent nothing (the a11y
    test hit it in CI when its gateway already listed the first package)."""
    ok(console_api.post("/gateways", json={"id": "typing"}))
    open_console(page, console_up, "#/g/typing/deps")
    requirements = page.locator("section", has=page.get_by_role("heading", name="Requirements"))
    expect(requirements).to_contain_text("No requirements.")
    held: list[Route] = []
    page.route(
        "**/gateways/typing/dependencies",
        lambda route: held.append(route) if route.request.method == "PUT" and not held else route.continue_(),
    )
    field = requirements.get_by_label("Requirement", exact=True)
    field.fill("fnpkg==1.0")
    requirements.get_by_role("button", name="Add").click()
    for _ in range(50):  # the PUT is on its way, and held
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the first Add never sent its PUT"
    field.fill("fnpkg==9.9")  # typed while the first one installs
    held[0].continue_()
    expect(requirements.locator("tr[data-requirement=fnpkg]")).to_contain_text("fnpkg==1.0")
    expect(field).to_have_value("fnpkg==9.9")
    requirements.get_by_role("button", name="Add").click()
    expect(requirements.get_by_role("alert")).to_contain_text("cannot be resolved")


def test_history_names_each_entrys_lock_and_the_release_sheet_lists_package_changes(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    ok(console_api.post("/gateways", json={"id": "locks"}))
    ok(console_api.put("/gateways/locks/dependencies", json={"dependencies": ["fnpkg==1.0"]}))
    files = {"index.py": USES_FNPKG}
    ok(console_api.put("/gateways/locks/functions/dev/user/me", json={"files": files}))
    promote = {"name": "dev/user/me", "target": "staging", "semver": "1.0.0-rc.1", "note": "qa"}
    ok(console_api.post("/gateways/locks/promote", json=promote))
    ok(console_api.put("/gateways/locks/dependencies", json={"dependencies": ["fnpkg==2.0"]}))
    ok(
        console_api.put(
            "/gateways/locks/functions/dev/user/me", json={"files": {"index.py": USES_FNPKG + "#\n"}}
        )
    )
    entries = console_api.get("/gateways/locks/history/dev/user/me").json()["entries"]
    new_lock, old_lock = entries[0]["lock_hash"], entries[1]["lock_hash"]
    assert new_lock and old_lock and new_lock != old_lock

    open_function(page, console_up, "locks")
    page.locator(".env-card[data-env=dev]").get_by_role("button", name="Release from dev").click()
    sheet = page.get_by_role("dialog", name="Release user/me")
    changes = sheet.locator(".lock-changes")
    expect(changes.locator("li[data-package=fnpkg]")).to_contain_text("1.0 → 2.0")
    page.keyboard.press("Escape")

    page.locator(".env-card[data-env=dev]").get_by_role("button", name="History of dev").click()
    history = page.get_by_role("dialog", name="History of user/me")
    expect(history.locator(f"tr[data-id='{entries[0]['id']}']")).to_contain_text(new_lock[:8])
    expect(history.locator(f"tr[data-id='{entries[1]['id']}']")).to_contain_text(old_lock[:8])
