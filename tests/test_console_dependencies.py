"""The console's Dependencies page and where a lock shows elsewhere: requirements are added, replaced,
removed and set, the resolved lock is listed with versions, a requirement the resolver refuses shows its
words and changes nothing; history entries name their lock, and the release sheet lists the packages a
release changes. Packages come from the session's folder of wheels (conftest), never the internet."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Locator, Page, Route, expect

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


def _hold_first_change(page: Page, gateway: str) -> list[Route]:
    """Hold back the page's first PUT of `gateway`'s requirements (an install that takes a while): it
    waits in the returned list until the test calls its `continue_()`."""
    held: list[Route] = []
    page.route(
        f"**/gateways/{gateway}/dependencies",
        lambda route: held.append(route) if route.request.method == "PUT" and not held else route.continue_(),
    )
    return held


def _wait_until_held(page: Page, held: list[Route]) -> Route:
    for _ in range(50):  # the PUT is on its way
        if held:
            return held[0]
        page.wait_for_timeout(100)
    raise AssertionError("the page never sent its PUT")


def _open_requirements(page: Page, console_up: UpProcess, console_api: httpx.Client, gateway: str) -> Locator:
    ok(console_api.post("/gateways", json={"id": gateway}))
    open_console(page, console_up, f"#/g/{gateway}/deps")
    requirements = page.locator("section", has=page.get_by_role("heading", name="Requirements"))
    expect(requirements).to_contain_text("No requirements.")
    return requirements


def test_a_requirement_typed_while_the_last_one_installs_is_kept(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    """The first Add's answer is held back (an install that takes a while); the user types the next
    requirement meanwhile. The answer used to clear the field, so the next Add sent nothing (the a11y
    test hit it in CI when its gateway already listed the first package)."""
    requirements = _open_requirements(page, console_up, console_api, "typing")
    held = _hold_first_change(page, "typing")
    field = requirements.get_by_label("Requirement", exact=True)
    field.fill("fnpkg==1.0")
    requirements.get_by_role("button", name="Add").click()
    _wait_until_held(page, held)
    field.fill("fnpkg==9.9")  # typed while the first one installs
    held[0].continue_()
    expect(requirements.locator("tr[data-requirement=fnpkg]")).to_contain_text("fnpkg==1.0")
    expect(field).to_have_value("fnpkg==9.9")
    requirements.get_by_role("button", name="Add").click()
    expect(requirements.get_by_role("alert")).to_contain_text("cannot be resolved")


def test_text_typed_in_set_all_while_a_change_installs_is_kept(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    """Every answer used to rewrite the "Set all" box with the requirements it listed, so what the user
    was typing there was lost when another change (an Add, a Remove) answered."""
    requirements = _open_requirements(page, console_up, console_api, "setall")
    held = _hold_first_change(page, "setall")
    all_box = requirements.get_by_label("All requirements, one a line")
    requirements.get_by_label("Requirement", exact=True).fill("fnpkg==1.0")
    requirements.get_by_role("button", name="Add").click()
    _wait_until_held(page, held)
    all_box.fill("fnpkg==2.0\nnative-thing\n")  # typed while the Add installs
    held[0].continue_()
    expect(requirements.locator("tr[data-requirement=fnpkg]")).to_contain_text("fnpkg==1.0")
    expect(all_box).to_have_value("fnpkg==2.0\nnative-thing\n")

    requirements.get_by_role("button", name="Set all").click()
    expect(requirements.locator("tr[data-requirement]")).to_have_count(2)
    expect(requirements.locator("tr[data-requirement=fnpkg]")).to_contain_text("fnpkg==2.0")
    expect(all_box).to_have_value("fnpkg==2.0\nnative-thing")  # the box, untouched since, is the answer's
    requirements.get_by_role("button", name="Remove native-thing").click()
    expect(requirements.locator("tr[data-requirement]")).to_have_count(1)
    expect(all_box).to_have_value("fnpkg==2.0")


def test_a_slow_install_shows_its_progress_until_it_answers(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    """While the server resolves and installs (held back here), the page says so with a progress bar and
    takes no other change; the answer hides the bar and gives the buttons back."""
    requirements = _open_requirements(page, console_up, console_api, "slowinstall")
    bar = requirements.get_by_role("progressbar", name="Resolving and installing")
    status = requirements.get_by_role("status")
    add = requirements.get_by_role("button", name="Add")
    set_all = requirements.get_by_role("button", name="Set all")
    expect(bar).to_be_hidden()
    held = _hold_first_change(page, "slowinstall")
    requirements.get_by_label("Requirement", exact=True).fill("fnpkg==1.0")
    add.click()
    route = _wait_until_held(page, held)
    expect(bar).to_be_visible()
    expect(status).to_contain_text("Resolving and installing the dependencies")
    expect(add).to_be_disabled()
    expect(set_all).to_be_disabled()
    page.wait_for_timeout(500)  # however long the install takes, the bar stays
    expect(bar).to_be_visible()
    assert console_api.get("/gateways/slowinstall/dependencies").json()["dependencies"] == []

    route.continue_()
    expect(requirements.locator("tr[data-requirement=fnpkg]")).to_contain_text("fnpkg==1.0")
    expect(bar).to_be_hidden()
    expect(add).to_be_enabled()
    expect(set_all).to_be_enabled()
    expect(requirements.get_by_role("button", name="Remove fnpkg==1.0")).to_be_enabled()


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
