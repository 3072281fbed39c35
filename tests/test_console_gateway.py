"""A gateway's page: its functions searched and filtered by name, environment and state, failing ones
marked in words; 1,000 functions in rows of one height; a card's long runtime error shown whole."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from fnstage.testing import UpProcess

pytest.register_assert_rewrite("support.browser")  # before its import: pytest_plugins loads it too
from support.browser import FAILING_ERROR, SCREENSHOTS, open_console, open_function, seed, seed_failing  # noqa: E402

pytest_plugins = ["support.browser"]  # the browser fixtures: Chromium, a real fnstage up
pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.long]

SLOW = 15_000  # ms: a shared machine under load can take seconds to draw a frame
ROW_HEIGHTS = "() => [...document.querySelectorAll('.fn-rows li:not([hidden])')].slice(0, 40).map((li) => li.getBoundingClientRect().height)"


def test_failing_functions_are_marked_and_the_list_filters_by_name_environment_and_state(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "listing")
    seed_failing(console_api, console_up, "listing")
    open_console(page, console_up, "#/g/listing")
    rows = page.locator(".fn-rows li:not([hidden])")
    expect(rows).to_have_count(2)
    broken = page.locator(".fn-row", has_text="user/broken")
    expect(broken).to_have_class(re.compile(r"\bfailing\b"))
    expect(broken.locator(".fn-state")).to_have_text("Failing in staging")  # in words, not colour alone
    expect(page.locator(".fn-row", has_text="user/me").locator(".fn-state")).to_have_text("Live")
    heights = page.evaluate(ROW_HEIGHTS)
    assert len(set(heights)) == 1, f"rows of different heights: {heights}"
    page.screenshot(path=str(SCREENSHOTS / "gateway-page.png"))

    state = page.get_by_label("State")
    expect(state.locator("option[value=failing]")).to_have_text("Failing (1)")
    state.select_option("failing")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("user/broken")
    expect(page.locator(".fn-count")).to_have_text("Showing 1 of 2 functions")

    state.select_option("")
    page.get_by_label("Environment").select_option("prod")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("user/me")

    page.get_by_label("Environment").select_option("")
    search = page.get_by_label("Search functions")
    search.fill("BROK")  # any case
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("user/broken")
    search.fill("user nothing")  # every word must match
    expect(rows).to_have_count(0)
    expect(page.get_by_role("heading", name="No function matches")).to_be_visible()
    page.get_by_role("button", name="Clear search and filters").click()
    expect(rows).to_have_count(2)
    expect(search).to_be_focused()
    search.fill("me")
    search.press("Escape")
    expect(search).to_have_value("")
    expect(rows).to_have_count(2)


def test_a_cards_runtime_error_is_shown_whole_on_hover_and_when_expanded(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    assert console_api.post("/gateways", json={"id": "wholeerror"}).status_code == 201
    seed_failing(console_api, console_up, "wholeerror")
    open_function(page, console_up, "wholeerror", "user/broken")
    card = page.locator(".env-card[data-env=staging]")
    line = card.locator(".runtime-state")
    expect(line).to_contain_text("requests failed")
    cut = line.evaluate("(el) => el.scrollWidth > el.clientWidth")
    assert cut, "the error is expected to be longer than the card here; the test would prove nothing"
    assert FAILING_ERROR in (line.get_attribute("title") or "")  # on hover
    full = card.get_by_test_id("runtime-error-staging")
    expect(full).to_be_hidden()
    card.locator("summary").click()  # or Enter on it: a <details>
    expect(full).to_be_visible()
    expect(full).to_contain_text(FAILING_ERROR)
    box = full.evaluate("(el) => [el.scrollWidth, el.clientWidth]")
    assert box[0] <= box[1], "the expanded error wraps instead of being cut"


LONG_ERROR = {
    # a load failure (the runtime refused the version), request failures, and one unbroken word
    "dev": "ModuleNotFoundError: No module named 'greetings_service_client_for_the_quota_checking_api' "
    "(index.py imports it at line 1; add it to the gateway's dependencies, or push the file that defines it)",
    "staging": FAILING_ERROR,
    "prod": "ValueError: " + "/var/lib/app/templates/" + "very-long-folder-name-" * 12 + "greeting.txt",
}
LONG_NOTE = "QA round 1: " + "the greeting now names the user and the quota, checked by three people; " * 3


def _with_long_errors(route: Route) -> None:
    """The real overview of user/me, every card made to fail with a long error and carry a long note."""
    data = route.fetch().json()
    for env, card in data["environments"].items():
        runtime = card["runtime"]
        assert runtime["runtimes"], f"{env}: no runtime on the card to fail"
        error, first = LONG_ERROR[env], runtime["runtimes"][0]
        if env == "dev":
            first.update(state="failed", error=error)
            runtime.update(failed=1, live=runtime["live"] - 1, summary=f"live 0/1, failed on 1: {error}")
        else:
            first.update(requests=10, errors=4, last_error=error)
            runtime.update(requests=10, errors=4, summary=f"live 1/1, 4 of 10 requests failed: {error}")
        if env == "prod":  # the summary alone carries the error (no runtime's words): it still expands
            first.update(last_error=None)
        card["note"] = LONG_NOTE
    route.fulfill(json=data)


def test_every_cards_long_error_and_note_are_shown_whole(
    page: Page, console_up: UpProcess, console_api: httpx.Client
) -> None:
    seed(console_api, "everycard")
    page.route(re.compile(r".*/api/v1/gateways/everycard/overview/user/me$"), _with_long_errors)
    open_function(page, console_up, "everycard")
    for env in ("dev", "staging", "prod"):
        card = page.locator(f".env-card[data-env={env}]")
        line = card.locator(".runtime-state")
        expect(line).to_contain_text("live")
        assert line.evaluate("(el) => el.scrollWidth > el.clientWidth"), (
            f"{env}: the error fits; proves nothing"
        )
        assert LONG_ERROR[env] in (line.get_attribute("title") or ""), f"{env}: not whole on hover"
        full = card.get_by_test_id(f"runtime-error-{env}")
        expect(full).to_be_hidden()
        card.locator("summary").focus()
        page.keyboard.press("Enter")  # a <details>: by keyboard as by a click
        expect(full).to_be_visible()
        expect(full).to_contain_text(LONG_ERROR[env])
        box = full.evaluate("(el) => [el.scrollWidth, el.clientWidth]")
        assert box[0] <= box[1], f"{env}: the expanded error is cut instead of wrapped"

        note = card.locator(".note")
        assert note.evaluate("(el) => el.scrollWidth > el.clientWidth"), (
            f"{env}: the note fits; proves nothing"
        )
        assert note.get_attribute("title") == LONG_NOTE, f"{env}: the note is not whole on hover"


ROW_BOXES = """() => [...document.querySelectorAll('.fn-rows li')].map((li) => {
  const row = li.querySelector('.fn-row');
  return {
    name: row.querySelector('.fn-name').textContent,
    li: li.getBoundingClientRect().height,
    row: row.getBoundingClientRect().height,
    tallest: Math.max(...[...row.querySelectorAll('*')].map((el) => el.getBoundingClientRect().height)),
  };
})"""


def _listed(
    base: str, env: str, *, semver: str = "1.0.0", by: str = "admin", error: str = ""
) -> dict[str, Any]:
    runtime = {"live": 1, "failed": 0, "pending": 0, "silent": 0, "active": 1, "requests": 10, "errors": 0}
    runtime["summary"] = f"live 1/1, 4 of 10 requests failed: {error}" if error else "live 1/1"
    runtime["errors"] = 4 if error else 0
    return {
        "gateway": "mixed",
        "name": f"{env}/{base}",
        "env": env,
        "base": base,
        "version": 1,
        "semver": semver,
        "entrypoint": "index.py",
        "history_id": None,
        "updated_at": "2026-11-30T10:00:00+00:00",
        "updated_by": by,
        "runtime": runtime,
    }


def test_rows_with_and_without_long_text_and_errors_are_of_one_height(
    page: Page, console_up: UpProcess
) -> None:
    """Measured in the DOM: a plain row, and rows with a long name, long versions, a long deployer's
    name, failing everywhere with long errors, or in one environment only, are all one height, and
    nothing in a row is taller than the row (wrapped text, hidden by the row's cut)."""
    long_semver = "1.0.0-rc.1+build.20261201.0123456789abcdef.with-more-metadata"
    functions = [
        _listed("plain/fn", "dev"),
        *(_listed("plain/released", env) for env in ("dev", "staging", "prod")),
        *(_listed("a-" + "long-name-" * 20 + "end", env) for env in ("dev", "staging")),
        *(_listed("long/semver", env, semver=long_semver) for env in ("dev", "staging", "prod")),
        _listed("long/deployer", "dev", by="a.very.long.user.name.from.the.identity.provider@example.com"),
        *(_listed("failing/everywhere", env, error=LONG_ERROR[env]) for env in ("dev", "staging", "prod")),
    ]
    body = json.dumps({"functions": functions})
    page.route(
        re.compile(r".*/api/v1/gateways/mixed/functions\?runtime=true$"),
        lambda route: route.fulfill(status=200, content_type="application/json", body=body),
    )
    open_console(page, console_up, "#/g/mixed")
    expect(page.locator(".fn-count")).to_have_text("6 functions", timeout=SLOW)
    boxes = page.evaluate(ROW_BOXES)
    assert len(boxes) == 6, boxes
    assert len({(b["li"], b["row"]) for b in boxes}) == 1, f"rows of different heights: {boxes}"
    assert all(b["tallest"] <= b["row"] for b in boxes), f"something in a row is taller than it: {boxes}"


def _synthetic_list(n: int) -> list[dict[str, Any]]:
    """n functions as the API lists them (one entry per environment), in every state: some in dev only,
    some released to staging or prod, some failing, some not live; one with a very long name."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        base = f"team{i % 10}/fn-{i:04d}" if i else "a-" + "very-long-name-" * 12 + "end"
        envs = ["dev"] + (["staging"] if i % 3 == 0 else []) + (["prod"] if i % 6 == 0 else [])
        for env in envs:
            failing = env == "staging" and i % 9 == 0
            pending = env == "prod" and i % 12 == 0
            runtime = {
                "live": 0 if pending else 1,
                "failed": 0,
                "pending": 1 if pending else 0,
                "silent": 0,
                "active": 1,
                "requests": 10,
                "errors": 4 if failing else 0,
                "summary": "live 1/1, 4 of 10 requests failed: KeyError at index.py:3"
                if failing
                else "live 1/1",
            }
            out.append(
                {
                    "gateway": "big",
                    "name": f"{env}/{base}",
                    "env": env,
                    "base": base,
                    "version": 1,
                    "semver": "1.0.0",
                    "entrypoint": "index.py",
                    "history_id": None,
                    "updated_at": "2026-11-30T10:00:00+00:00",
                    "updated_by": "admin",
                    "runtime": runtime,
                }
            )
    return out


def _expected(functions: list[dict[str, Any]], *, query: str = "", env: str = "", state: str = "") -> int:
    """The rows a filter keeps, worked out here from the data: the oracle for the page's count."""
    by_base: dict[str, dict[str, dict[str, Any]]] = {}
    for f in functions:
        by_base.setdefault(f["base"], {})[f["env"]] = f["runtime"]
    kept = 0
    for base, envs in by_base.items():
        if not all(word in base for word in query.split()) or (env and env not in envs):
            continue
        considered = [envs[env]] if env else list(envs.values())
        states = {
            "failing" if r["failed"] or r["errors"] else "not-live" if r["live"] < r["active"] else "live"
            for r in considered
        }
        worst = next(s for s in ("failing", "not-live", "live") if s in states)
        kept += not state or worst == state
    return kept


def test_a_thousand_functions_render_in_rows_of_one_height_and_filter_exactly(
    page: Page, console_up: UpProcess
) -> None:
    functions = _synthetic_list(1000)
    body = json.dumps({"functions": functions})

    def serve(route: Route) -> None:
        route.fulfill(status=200, content_type="application/json", body=body)

    page.route(re.compile(r".*/api/v1/gateways/big/functions\?runtime=true$"), serve)
    open_console(page, console_up, "#/g/big")
    count = page.locator(".fn-count")
    expect(count).to_have_text("1,000 functions", timeout=SLOW)
    rows = page.locator(".fn-rows li")
    expect(rows.first).to_contain_text("a-very-long-name-")  # sorted by name; cut, not wrapped
    expect(rows.first).to_have_attribute("aria-setsize", "1000")
    in_dom = rows.count()
    assert 15 <= in_dom < 100, f"{in_dom} rows in the DOM: the list should hold the rows in view, not all"
    heights = page.evaluate(ROW_HEIGHTS)
    assert len(set(heights)) == 1, f"rows of different heights: {heights}"

    # scrolled to the end, the last function is there, in its place
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    last = page.locator(".fn-rows li", has_text="team9/fn-0999")
    expect(last).to_be_visible(timeout=SLOW)
    expect(last).to_have_attribute("aria-posinset", "1000")
    page.evaluate("window.scrollTo(0, 0)")
    expect(rows.first).to_have_attribute("aria-posinset", "1", timeout=SLOW)  # redrawn on the next frame

    # Tab goes from row to row past the rows first drawn
    page.locator(".fn-row").first.focus()
    for step in range(2, 42):
        page.keyboard.press("Tab")
        position = page.evaluate("document.activeElement.closest('li')?.getAttribute('aria-posinset')")
        assert position == str(step), f"Tab {step - 1} from the first row focused row {position}"

    search = page.get_by_label("Search functions")
    for query in ("fn-09", "team3/", "fn-0999", "TEAM1 fn-01"):
        search.fill(query)
        n = _expected(functions, query=query.lower())
        expect(count).to_have_text(f"Showing {n:,} of 1,000 functions", timeout=SLOW)
        if n < 15:
            expect(rows).to_have_count(n, timeout=SLOW)
        else:
            expect(rows.first).to_have_attribute("aria-setsize", str(n), timeout=SLOW)
    search.fill("")
    for env, state in (("", "failing"), ("prod", "not-live"), ("staging", "live"), ("prod", "")):
        page.get_by_label("Environment").select_option(env)
        page.get_by_label("State").select_option(state)
        n = _expected(functions, env=env, state=state)
        expect(count).to_have_text(f"Showing {n:,} of 1,000 functions", timeout=SLOW)
        expect(rows.first).to_have_attribute("aria-setsize", str(n), timeout=SLOW)
    page.get_by_label("Environment").select_option("")
    expect(page.get_by_label("State").locator("option[value=failing]")).to_have_text(
        f"Failing ({_expected(functions, state='failing')})"
    )


def test_a_function_held_pending_by_its_cell_is_listed_pending_not_live_nor_failing(
    page: Page, console_up: UpProcess
) -> None:
    """A cold start's versions are held pending (servable within a load, not run yet): the list says so
    in words, with the runtime's summary on hover, and the State filter finds them."""
    held = _listed("cold/fn", "dev")
    held["runtime"].update(live=0, pending=1, held=1, requests=0)
    held["runtime"]["summary"] = "live 0/1, pending on 1: not run yet, loads on its first request"
    arriving = _listed("new/fn", "dev")  # pending because it is not loaded yet: not live
    arriving["runtime"].update(live=0, pending=1, held=0, summary="live 0/1")
    body = json.dumps({"functions": [held, arriving, _listed("plain/fn", "dev")]})
    page.route(
        re.compile(r".*/api/v1/gateways/mixed/functions\?runtime=true$"),
        lambda route: route.fulfill(status=200, content_type="application/json", body=body),
    )
    open_console(page, console_up, "#/g/mixed")
    expect(page.locator(".fn-count")).to_have_text("3 functions", timeout=SLOW)
    row = page.locator(".fn-row", has_text="cold/fn")
    expect(row.locator(".fn-state")).to_have_text("Pending in dev")
    assert "pending on 1: not run yet" in (row.locator(".fn-state").get_attribute("title") or "")
    expect(page.locator(".fn-row", has_text="new/fn").locator(".fn-state")).to_have_text("Not live in dev")
    expect(page.locator(".fn-row", has_text="plain/fn").locator(".fn-state")).to_have_text("Live")
    state = page.get_by_label("State")
    expect(state.locator("option[value=pending]")).to_have_text("Pending (1)")
    state.select_option("pending")
    rows = page.locator(".fn-rows li:not([hidden])")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("cold/fn")
