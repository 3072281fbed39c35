"""The console by keyboard alone: sign in, open a function, edit and save with Ctrl+S, open the release
sheet, pick a target, type semver and note, release, open history, roll back. Every Tab lands on an
element whose focus is visible; a sheet keeps focus inside, Escape closes it, and focus comes back to
what opened it."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from fnstage.testing import UpProcess

pytest.register_assert_rewrite("support.browser")  # before its import: pytest_plugins loads it too
from support.browser import UTILS, seed  # noqa: E402

pytest_plugins = ["support.browser"]  # the browser fixtures: Chromium, a real fnstage up
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.long]

# Where focus is, and whether a sighted keyboard user can see it: an outline of at least 2px on the
# element, on the styled sibling of a hidden radio (the segmented controls), or on the code editor.
FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return {where: 'body', visible: false, inDialog: false, text: ''};
  const shown = [el, el.nextElementSibling, el.closest('.cm-editor')].filter(Boolean).some((c) => {
    const s = getComputedStyle(c);
    return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
  });
  const box = el.getBoundingClientRect();
  return {
    where: el.outerHTML.slice(0, 160) + ' ' + [el, el.closest('.cm-editor')].filter(Boolean).map((c) => c.className + ':' + getComputedStyle(c).outlineStyle + ' ' + getComputedStyle(c).outlineWidth).join(', '),
    visible: shown && box.width > 0 && box.height > 0,
    inDialog: Boolean(el.closest('[role=dialog]')),
    text: (el.getAttribute('aria-label') || el.textContent || el.value || '').trim().slice(0, 80),
  };
}"""


def focus(page: Page) -> dict[str, object]:
    return dict(page.evaluate(FOCUS))


def tab_to(page: Page, matches: str, *, back: bool = False, limit: int = 60) -> None:
    """Press Tab (Shift+Tab with `back`) until the focused element matches the JS predicate `matches`
    (on `el`), checking at every stop that the focus is visible."""
    predicate = f"() => {{ const el = document.activeElement; return Boolean(el && ({matches})); }}"
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        where = focus(page)
        assert where["visible"], f"focus is not visible on {where['where']}"
        if page.evaluate(predicate):
            return
    raise AssertionError(f"{limit} Tabs never reached an element where {matches}")


def wait_for_the_runtimes(page: Page) -> None:
    """A release sheet stays open (and Escape waits) until the runtimes confirm, or 15 s pass."""
    page.wait_for_function(
        "() => !(document.querySelector('.release-status')?.textContent ?? '').includes('Waiting')",
        timeout=25000,
    )


def test_sign_in_edit_save_release_and_roll_back_by_keyboard_alone(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "walk", released=False)
    assert console_api.patch("/gateways/walk", json={"allow_dev_to_prod": True}).status_code == 200
    page.goto(f"{console_up.url}/")

    # sign in: the token field has focus from the start
    assert focus(page)["visible"], "the token field should have visible focus"
    page.keyboard.type(console_up.token)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    # the gateway picker: typing a gateway's first letters picks it, as in any select
    tab_to(page, "el.id === 'gateway-select'", back=True)  # in the top bar, before the page
    page.keyboard.type("walk")
    expect(page.get_by_role("heading", name="walk", exact=True)).to_be_visible()

    # search the list, then open the function
    tab_to(page, "el.type === 'search'")
    page.keyboard.type("user/m")
    tab_to(page, "el.matches('a.fn-row')")
    page.keyboard.press("Enter")
    expect(page.locator(".env-card[data-env=dev] .semver")).to_be_visible()
    expect(page.get_by_role("tab", name="index.py entrypoint")).to_have_attribute("aria-selected", "true")

    # edit in the code editor and save with Ctrl+S
    tab_to(page, "el.classList.contains('cm-content')")
    page.keyboard.press("Control+End")
    page.keyboard.type("# edited by keyboard alone")
    page.keyboard.press("Control+s")
    expect(page.locator(".save-status")).to_contain_text("Saved version 3")
    saved = console_api.get("/gateways/walk/functions/dev/user/me", params={"files": "true"}).json()
    assert saved["files"]["index.py"].endswith("# edited by keyboard alone")

    # leave the editor (Escape, then Tab moves focus instead of indenting) and open the release sheet
    page.keyboard.press("Escape")
    tab_to(page, "el.textContent.trim() === 'Release…'", back=True)
    page.keyboard.press("Enter")
    sheet = page.get_by_role("dialog", name="Release user/me")
    expect(sheet).to_be_visible()
    expect(sheet.get_by_label("Release note")).to_be_focused()

    # the sheet keeps focus inside, however far one tabs
    for _ in range(25):
        page.keyboard.press("Tab")
        where = focus(page)
        assert where["inDialog"], f"Tab left the sheet: {where['where']}"
        assert where["visible"], f"focus is not visible on {where['where']}"

    # pick a target with the arrow keys: prod, then back to staging
    targets = sheet.get_by_role("radiogroup", name="Target environment")
    tab_to(page, "el.name === 'target-env'")
    expect(targets.get_by_role("radio", name="Staging")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(targets.get_by_role("radio", name="Prod")).to_be_checked()
    expect(targets.get_by_role("radio", name="Prod")).to_be_focused()  # redrawn, focus kept
    page.keyboard.press("ArrowLeft")
    expect(targets.get_by_role("radio", name="Staging")).to_be_checked()
    expect(targets.get_by_role("radio", name="Staging")).to_be_focused()

    # semver and note, then the Release button
    tab_to(page, "el.matches('input.mono') && el.getAttribute('aria-describedby')")
    page.keyboard.press("Control+a")
    page.keyboard.type("1.0.0-rc.1")
    tab_to(page, "el.tagName === 'TEXTAREA'")
    page.keyboard.type("Released by keyboard")
    tab_to(page, "el.textContent.trim() === 'Release'")
    page.keyboard.press("Enter")
    expect(sheet.locator(".release-status")).to_contain_text(
        "Released staging/user/me v1.0.0-rc.1", timeout=20000
    )
    wait_for_the_runtimes(page)
    if sheet.is_visible():  # it closes by itself once the runtimes confirm; Escape closes it otherwise
        page.keyboard.press("Escape")
    expect(sheet).to_be_hidden()
    assert focus(page)["text"] == "Release…", "focus should return to the button that opened the sheet"
    expect(page.locator(".env-card[data-env=staging]")).to_contain_text("Released by keyboard")

    # history: Escape closes it and focus returns; then roll dev back to version 2
    tab_to(page, "el.textContent.trim() === 'History'", back=True)
    page.keyboard.press("Enter")
    history = page.get_by_role("dialog", name="History of user/me")
    expect(history).to_be_visible()
    page.keyboard.press("Escape")
    expect(history).to_be_hidden()
    assert focus(page)["text"] == "History"
    page.keyboard.press("Enter")
    expect(history).to_be_visible()
    tab_to(page, "el.name === 'history-env'")
    page.keyboard.press("ArrowLeft")  # prod -> staging
    page.keyboard.press("ArrowLeft")  # staging -> dev
    expect(history.get_by_role("radio", name="Dev")).to_be_checked()
    expect(history.locator("tbody tr")).to_have_count(3)
    second = history.locator("tbody tr").nth(1)
    entry = second.get_attribute("data-id")
    tab_to(
        page,
        f"(el.getAttribute('aria-label') || '').startsWith('Roll back dev to') && el.closest('tr').dataset.id === '{entry}'",
    )
    page.keyboard.press("Enter")

    sheet = page.get_by_role("dialog", name="Release user/me")
    targets = sheet.get_by_role("radiogroup", name="Target environment")
    expect(targets.get_by_role("radio", name="Dev (roll back)")).to_be_checked()
    expect(sheet.get_by_label("Release note")).to_be_focused()
    page.keyboard.type("Back to the saved greeting")
    tab_to(page, "el.textContent.trim() === 'Release'")
    page.keyboard.press("Enter")
    expect(sheet.locator(".release-status")).to_contain_text("Released dev/user/me", timeout=20000)
    wait_for_the_runtimes(page)
    dev = console_api.get("/gateways/walk/functions/dev/user/me", params={"files": "true"}).json()
    assert dev["version"] == 4 and dev["files"]["utils.py"] == UTILS.replace("Hello", "Hi")
    assert not dev["files"]["index.py"].endswith("# edited by keyboard alone")
    kinds = [e["kind"] for e in console_api.get("/gateways/walk/history/dev/user/me").json()["entries"]]
    assert kinds[0] == "rollback"
