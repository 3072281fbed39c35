"""Rendering: relative times, coloured diffs, tables, status panels and error lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from fnstage.cli import render
from fnstage.cli.client import CliError

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat()


def plain(renderable: object, width: int = 160) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (ago(seconds=3), "just now"),
        (ago(seconds=-30), "just now"),  # a server clock slightly ahead
        (ago(seconds=42), "42 s ago"),
        (ago(minutes=3, seconds=20), "3 min ago"),
        (ago(hours=5, minutes=59), "5 h ago"),
        (ago(days=1, hours=2), "1 day ago"),
        (ago(days=12), "12 days ago"),
        (ago(days=45), "2026-10-12"),
        (None, "-"),
        ("not a time", "-"),
    ],
)
def test_relative_time(when: str | None, expected: str) -> None:
    assert render.relative_time(when, NOW) == expected


def test_relative_time_accepts_z_suffix_and_naive_utc() -> None:
    assert render.relative_time("2026-11-26T11:57:00Z", NOW) == "3 min ago"
    assert render.relative_time("2026-11-26T11:57:00", NOW) == "3 min ago"


def test_diff_lines_colour_additions_removals_and_hunks() -> None:
    lines = render.diff_lines("index.py", "a = 1\nb = 2\n", "a = 1\nb = 3\n")
    styles = {line.plain: str(line.style) for line in lines}
    assert styles["--- a/index.py"] == "bold"
    assert styles["+++ b/index.py"] == "bold"
    assert styles["-b = 2"] == "red"
    assert styles["+b = 3"] == "green"
    assert styles[" a = 1"] == ""
    assert styles["@@ -1,2 +1,2 @@"] == "cyan"
    assert list(styles) == [
        "--- a/index.py",
        "+++ b/index.py",
        "@@ -1,2 +1,2 @@",
        " a = 1",
        "-b = 2",
        "+b = 3",
    ]


def test_diff_lines_of_added_and_removed_files_use_dev_null() -> None:
    added = [line.plain for line in render.diff_lines("new.py", None, "x = 1\n")]
    assert added[:2] == ["--- /dev/null", "+++ b/new.py"]
    removed = [line.plain for line in render.diff_lines("old.py", "x = 1\n", None)]
    assert removed[:2] == ["--- a/old.py", "+++ /dev/null"]


def test_diff_view_shows_changed_files_and_a_summary() -> None:
    diff = {
        "a": {"ref": "prod/user/me", "label": "prod/user/me (1.0.0)"},
        "b": {"ref": "dev/user/me", "label": "dev/user/me (0.1.0)"},
        "files": [
            {"path": "index.py", "status": "modified", "a": "x = 1\n", "b": "x = 2\n"},
            {"path": "new.py", "status": "added", "a": None, "b": "y = 1\n"},
            {"path": "same.py", "status": "unchanged", "a": "z\n", "b": "z\n"},
        ],
    }
    text = "\n".join(line.plain for line in render.diff_view(diff))
    assert text.startswith("diff prod/user/me (1.0.0) → dev/user/me (0.1.0)")
    assert "+x = 2" in text and "+y = 1" in text
    assert "same.py" not in text
    assert text.endswith("2 files changed (1 modified, 1 added), 1 unchanged")


def test_diff_view_without_differences() -> None:
    diff = {"a": {"label": "a"}, "b": {"label": "b"}, "files": [{"path": "i.py", "status": "unchanged"}]}
    assert render.diff_view(diff)[-1].plain == "no differences: both have the same files"


def test_history_table_lists_entries_with_relative_times() -> None:
    entries = [
        {
            "id": 7,
            "version": 3,
            "semver": "1.0.2",
            "kind": "rollback",
            "created_at": ago(minutes=3),
            "actor": "ana",
            "note": "1.0.1 breaks login",
        },
        {
            "id": 5,
            "version": 2,
            "semver": "1.0.1",
            "kind": "release",
            "created_at": ago(days=2),
            "actor": "bo",
            "note": None,
        },
    ]
    text = plain(render.history_table(entries, NOW))
    for expected in ("#7", "1.0.2", "rollback", "3 min ago", "ana", "1.0.1 breaks login", "2 days ago"):
        assert expected in text


def test_functions_and_gateways_tables() -> None:
    fn = {
        "name": "dev/user/me",
        "version": 4,
        "semver": "0.1.0",
        "file_hashes": {"a.py": "1", "b.py": "2"},
        "methods": ["GET", "POST"],
        "updated_at": ago(minutes=10),
        "updated_by": "ana",
    }
    text = plain(render.functions_table([fn], NOW))
    assert "dev/user/me" in text and "GET,POST" in text and "10 min ago" in text
    gw = {
        "id": "demo",
        "allow_dev_to_prod": False,
        "history_limit": None,
        "dependencies": ["requests==2.32.3"],
        "created_at": ago(hours=2),
        "created_by": "admin",
    }
    assert "via staging" in plain(render.gateways_table([gw], NOW))
    card = plain(render.gateway_card(gw, NOW))
    assert "requests==2.32.3" in card and "server default" in card and "2 h ago by admin" in card


def test_status_view_shows_three_environments_side_by_side() -> None:
    overview = {
        "base": "user/me",
        "environments": {
            "dev": {
                "semver": "0.1.3",
                "version": 9,
                "state": "in development",
                "deployed_by": "ana",
                "deployed_at": ago(minutes=3),
                "note": None,
            },
            "staging": {
                "semver": "1.0.0-rc.1",
                "version": 1,
                "state": "QA in progress",
                "deployed_by": "bo",
                "deployed_at": ago(hours=1),
                "note": "QA build",
            },
            "prod": None,
        },
    }
    text = plain(render.status_view(overview, NOW), width=150)
    lines = text.splitlines()
    row = next(line for line in lines if "0.1.3" in line)
    assert "1.0.0-rc.1" in row and "not deployed" in text  # side by side: one row holds dev and staging
    assert row.index("0.1.3") < row.index("1.0.0-rc.1")
    for expected in ("in development", "QA in progress", "ana, 3 min ago", "QA build", "→"):
        assert expected in text


def test_state_styles() -> None:
    assert render.state_style("serving") == "bold green"
    assert render.state_style("live 2/2") == "bold green"
    assert render.state_style("QA in progress") == "bold yellow"
    assert render.state_style("load failed on 1/2") == "bold red"


def test_say_prints_a_long_plain_line_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    # written without rich: brackets are text, not markup, and nothing wraps
    line = "pushed dev/[bold]user[/bold]/me :smile: " + "x" * 300
    render.say(line)
    assert capsys.readouterr().out == line + "\n"


def test_print_error_is_one_red_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    render.print_error(CliError("semver 1.0.0 is not greater than prod's current 1.0.0 " * 3, field="semver"))
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1  # long messages are not wrapped
    assert lines[0].startswith("error: semver 1.0.0") and lines[0].endswith("(field: semver)")


def test_print_error_lists_build_problems_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    details = [
        {"file": "index.py", "line": 1, "col": 5, "message": "invalid syntax"},
        {"file": "utils.py", "line": 3, "col": 1, "message": "cannot resolve `requests`"},
    ]
    error = CliError(
        "index.py:1:5: invalid syntax (and 1 more problem)",
        field="files",
        code="build_failed",
        details=details,
        hint="fix and push again",
    )
    render.print_error(error)
    assert capsys.readouterr().err.splitlines() == [
        "error: index.py:1:5: invalid syntax (and 1 more problem) (field: files)",
        "  index.py:1:5: invalid syntax",
        "  utils.py:3:1: cannot resolve `requests`",
        "hint: fix and push again",
    ]


def test_logs_view_shows_invocations_and_their_lines() -> None:
    invocations = [
        {
            "time": NOW.timestamp() - 30,
            "status": 500,
            "duration_ms": 12,
            "version": 3,
            "request_id": "r1",
            "lines": ["hello"],
            "error": "Traceback...\nValueError",
            "trigger": None,
        },
        {
            "time": NOW.timestamp() - 90,
            "status": 200,
            "duration_ms": 1,
            "version": 3,
            "request_id": "r0",
            "lines": [],
            "error": None,
            "trigger": "nightly",
        },
    ]
    lines = [line.plain for line in render.logs_view(invocations, NOW)]
    assert lines[0] == "30 s ago     500     12 ms       v3       r1"
    assert lines[-1] == "1 min ago    200     1 ms        v3       r0  trigger nightly"
    header = render.logs_header().plain
    assert header == "WHEN         STATUS  DURATION    VERSION  REQUEST ID"
    assert [header.index(c) for c in ("STATUS", "DURATION", "VERSION", "REQUEST ID")] == [
        lines[0].index(v) for v in ("500", "12 ms", "v3", "r1")
    ]
    assert "  hello" in lines and "  ValueError" in lines


def test_status_card_shows_where_the_version_is_live() -> None:
    card = {
        "semver": "1.0.2",
        "version": 3,
        "state": "serving",
        "deployed_by": "ada",
        "deployed_at": ago(minutes=5),
        "note": "fix",
        "runtime": {"summary": "live 1/2, failed on 1: NameError at utils.py:3"},
    }
    text = plain(render.environment_panel("prod", card, NOW))
    assert "serving · live 1/2, failed on 1: NameError at utils.py:3" in text
    assert render.state_style("serving · live 1/2, failed on 1: x") == "bold red"
    assert render.state_style("serving · live 2/2") == "bold green"


def test_logs_view_reads_the_runtimes_invocation_records() -> None:
    record = {
        "request_id": "abc",
        "time": (NOW.timestamp() - 120),
        "version": 2,
        "status": 200,
        "duration_ms": 0.10362800003349548,
        "lines": ["hello Ada"],
        "error": None,
    }
    header, line = (plain(t) for t in render.logs_view([record], NOW))
    assert header.split() == ["2", "min", "ago", "200", "0.1", "ms", "v2", "abc"]
    assert line.strip() == "hello Ada"


def test_status_says_which_protection_a_runtimes_cells_run_without() -> None:
    runtime = {
        "host": "h1",
        "pid": 7,
        "state": "live",
        "feed_state": "connected",
        "sandbox": {"missing": ["landlock: kernel does not support it (ABI 0)"]},
    }
    environments = {"dev": {"runtime": {"runtimes": [runtime]}}, "staging": None, "prod": None}
    lines = [line.plain for line in render.runtime_alerts(environments, NOW)]
    assert lines == [
        "dev: runtime h1 pid 7: its cells run without landlock: kernel does not support it (ABI 0)"
    ]
    runtime["sandbox"] = {"missing": []}
    assert render.runtime_alerts(environments, NOW) == []


def test_function_list_fits_80_columns() -> None:
    functions = [
        {
            "name": f"staging/team-{i}/a-rather-long-function-name-for-reports",
            "version": 1234,
            "semver": "10.20.30-rc.12",
            "file_hashes": {"index.py": "x"},
            "methods": ["GET", "POST", "PUT", "DELETE"],
            "updated_at": ago(days=3),
            "updated_by": "ada.lovelace@example.org",
        }
        for i in range(3)
    ]
    lines = plain(render.functions_table(functions, NOW), width=80).splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "10.20.30-rc.12" in "\n".join(lines)  # narrowed by folding, nothing dropped
