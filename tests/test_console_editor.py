"""The console's editor: sign in, functions by base, edit and save to dev, build errors inline,
file tabs, unsaved-change warnings, and "try it" through the runtime."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from fnstage.testing import UpProcess

pytest.register_assert_rewrite("support.browser")  # before its import: pytest_plugins loads it too
from support.browser import (  # noqa: E402
    INDEX,
    SCREENSHOTS,
    UTILS,
    open_function,
    replace_editor_text,
    runtime_answers,
    seed,
)

pytest_plugins = ["support.browser"]  # the browser fixtures: Chromium, a real fnstage up
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.long]


def test_sign_in_pick_a_gateway_and_see_functions_grouped(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "signin")
    console_api.put(
        "/gateways/signin/functions/dev/orders/list",
        json={"files": {"index.py": "def main(ctx):\n    return []\n"}},
    )
    page.goto(console_up.url + "/")
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).not_to_be_empty()  # the API's own words about the bad token
    page.get_by_label("API token").fill(console_up.token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Gateway").select_option("signin")
    row = page.locator(".fn-row", has_text="user/me")
    expect(row.locator(".badge.env-dev")).to_contain_text("v0.2.0")
    expect(row.locator(".badge.env-staging")).to_contain_text("v1.0.0-rc.1")
    expect(row.locator(".badge.env-prod")).to_contain_text("v1.0.0")
    expect(page.locator(".fn-row", has_text="orders/list").locator(".badge.absent")).to_have_count(2)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    assert page.evaluate("localStorage.getItem('fnstage.token')") is None


def test_edit_save_and_the_function_returns_the_new_output(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "edit")
    open_function(page, console_up, "edit")
    cards = page.locator(".env-card")
    expect(cards).to_have_count(3)
    expect(cards.nth(0)).to_contain_text("v0.2.0")
    expect(cards.nth(1)).to_contain_text("v1.0.0-rc.1")
    expect(cards.nth(2)).to_contain_text("First release")
    page.get_by_role("tab", name="utils.py").click()
    replace_editor_text(page, UTILS.replace("Hello", "Howdy"))
    expect(page.locator(".save-status")).to_have_text("Unsaved changes")
    page.keyboard.press("Control+s")
    expect(page.locator(".save-status")).to_contain_text("Saved version 3")
    fn = console_api.get("/gateways/edit/functions/dev/user/me", params={"files": "true"}).json()
    assert fn["version"] == 3
    assert "Howdy" in fn["files"]["utils.py"]
    expect(page.locator(".env-card[data-env=dev]")).to_contain_text("version 3")

    assert runtime_answers(console_up), "fnstage up's runtime does not answer"
    deadline = time.monotonic() + 5
    while True:  # "live in dev within a second": the console's try it goes through the runtime
        page.get_by_label("Query").fill("name=Ada")
        page.get_by_role("button", name="Send").click()
        body = page.locator(".try-body")
        expect(body).to_be_visible()
        if "Howdy, Ada!" in body.inner_text() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    expect(page.locator(".try-body")).to_contain_text("Howdy, Ada!")
    expect(page.locator("[data-testid=try-status]")).to_have_text("200")


def test_a_build_error_is_shown_inline_and_nothing_is_saved(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "broken", released=False)
    open_function(page, console_up, "broken")
    broken = INDEX.replace('return {"message": greet(name)}', 'return {"message": greet(name)')
    replace_editor_text(page, broken)
    page.get_by_role("button", name="Save").click()
    problems = page.locator(".problems")
    expect(problems).to_contain_text("Build failed: nothing was saved")
    expect(problems).to_contain_text("index.py:7")
    expect(page.locator(".save-status")).to_have_text("Build failed: not saved")
    expect(page.locator(".tab.has-problem")).to_have_text("index.pymain")
    # the error is marked in the editor at its line, and the unsaved text is kept
    expect(page.locator(".editor .cm-lintRange-error").first).to_be_visible()
    expect(page.locator(".editor .cm-gutter-lint .cm-lint-marker-error")).to_have_count(1)
    assert "greet(name)}" not in page.locator(".editor .cm-content").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "build-error.png"))
    assert console_api.get("/gateways/broken/functions/dev/user/me").json()["version"] == 2
    # fixing it saves, and clears the problems
    replace_editor_text(page, INDEX.replace("greeting", "greeting you"))
    page.keyboard.press("Control+s")
    expect(page.locator(".save-status")).to_contain_text("Saved version 3")
    expect(problems).to_be_hidden()


def test_add_rename_and_delete_files_then_save(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "files", released=False)
    open_function(page, console_up, "files")
    page.get_by_role("button", name="Add file").click()
    page.get_by_label("New file name").fill("helpers.py")
    page.keyboard.press("Enter")
    expect(page.get_by_role("tab", name="helpers.py")).to_have_attribute("aria-selected", "true")
    page.keyboard.insert_text("PI = 3\n")
    page.get_by_role("button", name="Rename helpers.py").click()
    page.get_by_label("New name for helpers.py").fill("consts.py")
    page.keyboard.press("Enter")
    expect(page.get_by_role("tab", name="consts.py")).to_be_visible()
    page.get_by_role("tab", name="utils.py").click()
    page.get_by_role("button", name="Delete utils.py").click()
    expect(page.get_by_role("tab", name="utils.py")).to_have_count(0)
    # index.py still imports utils: the server refuses, and says which import cannot resolve
    page.keyboard.press("Control+s")
    expect(page.locator(".problems")).to_contain_text("utils")
    page.get_by_role("tab", name="index.py").click()
    replace_editor_text(page, "from consts import PI\n\n\ndef main(ctx):\n    return {'pi': PI}\n")
    page.keyboard.press("Control+s")
    expect(page.locator(".save-status")).to_contain_text("Saved version 3")
    fn = console_api.get("/gateways/files/functions/dev/user/me", params={"files": "true"}).json()
    assert sorted(fn["files"]) == ["consts.py", "index.py"]
    assert fn["files"]["consts.py"] == "PI = 3\n"


def test_leaving_with_unsaved_changes_asks_first(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "leave", released=False)
    open_function(page, console_up, "leave")
    replace_editor_text(page, INDEX + "# more\n")
    asked: list[str] = []

    def answer(dialog) -> None:
        asked.append(dialog.type)
        # stay on a link's confirm; leave on closing the tab, so no dialog is left open for the
        # context's close: a dismissed beforeunload left the page open, and Chromium once exited while
        # the fixture closed it (every later test of the module then found the browser gone)
        if dialog.type == "beforeunload":
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", answer)
    page.get_by_role("link", name="leave").click()  # the breadcrumb back to the gateway
    for _ in range(100):  # the dialog comes a moment after the click: asserting at once raced it in CI
        if asked:
            break
        page.wait_for_timeout(50)  # lets Playwright deliver the dialog event
    assert asked == ["confirm"]
    expect(page).to_have_url(re.compile(r"/f/user/me$"))  # stayed
    expect(page.locator(".editor .cm-content")).to_contain_text("# more")
    # closing the tab asks too (beforeunload)
    with page.expect_event("close"):
        page.close(run_before_unload=True)
    assert asked == ["confirm", "beforeunload"]


def test_try_it_without_a_runtime_says_so(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "tryit", released=False)
    open_function(page, console_up, "tryit")
    page.get_by_role("button", name="Send").click()
    output = page.locator(".try-output")
    if runtime_answers(console_up):
        expect(output.locator("[data-testid=try-status]")).to_have_text("200")
        expect(output).to_contain_text("Hi, world!")
        expect(output).to_contain_text(re.compile("greeting world|logs not available yet"))
    else:
        expect(output).to_contain_text("did not answer")


def test_a_live_version_whose_requests_fail_is_flagged_on_its_card(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    ok = console_api.post("/gateways", json={"id": "flaky"})
    assert ok.status_code == 201, ok.text
    failing = {"files": {"index.py": "def main(ctx):\n    return 1 / 0\n"}}
    assert console_api.put("/gateways/flaky/functions/dev/user/me", json=failing).status_code == 201
    host = {"Host": "flaky.dev.localhost"}
    deadline = time.monotonic() + 10
    answered = 0
    while answered < 3 and time.monotonic() < deadline:  # until it is live, then three failures
        if httpx.get(f"{console_up.runtime_url}/user/me", headers=host).status_code == 500:
            answered += 1
    assert answered == 3
    deadline = time.monotonic() + 15  # the runtime reports counts with its heartbeat (every 3 s)
    while console_api.get("/gateways/flaky/rollout/dev/user/me").json()["errors"] < 3:
        assert time.monotonic() < deadline, "the failures never reached the control plane"
        time.sleep(0.2)
    open_function(page, console_up, "flaky")
    state = page.locator(".env-card[data-env=dev] .runtime-state")
    expect(state).to_have_class(re.compile(r"\berroring\b"))
    expect(state).to_contain_text("3 of 3 requests failed: ZeroDivisionError at index.py:2")


def test_dev_semver_is_set_from_the_editor_and_a_bad_one_is_refused(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "semver", released=False)
    open_function(page, console_up, "semver")
    semver = page.get_by_label("Dev semver (optional)")
    expect(semver).to_have_attribute("placeholder", "v0.2.0")
    semver.fill("not-a-version")
    page.get_by_role("button", name=re.compile("^Save")).click()
    expect(page.locator(".banner")).to_contain_text("semver")  # the API's words, nothing saved
    assert console_api.get("/gateways/semver/functions/dev/user/me").json()["version"] == 2
    semver.fill("0.3.0")
    page.get_by_role("button", name=re.compile("^Save")).click()  # no file changed: the semver alone
    expect(page.locator(".save-status")).to_contain_text("Saved version 3")
    expect(page.locator(".env-card[data-env=dev]")).to_contain_text("v0.3.0")
    assert console_api.get("/gateways/semver/functions/dev/user/me").json()["semver"] == "0.3.0"
    expect(semver).to_have_value("")
    expect(semver).to_have_attribute("placeholder", "v0.3.0")
