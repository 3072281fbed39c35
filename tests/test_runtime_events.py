"""Runtime events: one line each with a UTC timestamp, as text for people or JSON for log shippers."""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from fnstage.runtime.log_format import JsonFormatter, TextFormatter, configure, fields
from fnstage.service import Actor, Services
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store
from fnstage.testing import RuntimeServer

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("fnstage.runtime", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_a_text_line_has_a_utc_timestamp_and_a_level() -> None:
    line = TextFormatter().format(record("runtime: loaded %s v%d in %.2f ms", "prod/user/me", 7, 0.9))
    assert re.fullmatch(STAMP + r" info    runtime: loaded prod/user/me v7 in 0\.90 ms", line), line


def test_a_json_line_carries_the_event_and_its_fields() -> None:
    entry = record("runtime: loaded %s v%d", "prod/user/me", 7, **fields(event="loaded", version=7, ms=0.9))
    line = json.loads(JsonFormatter({"cell": 12}).format(entry))
    assert re.fullmatch(STAMP, line.pop("time"))
    assert line == {
        "level": "info",
        "logger": "fnstage.runtime",
        "cell": 12,
        "message": "runtime: loaded prod/user/me v7",
        "event": "loaded",
        "version": 7,
        "ms": 0.9,
    }


def test_an_unknown_format_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="use text or json"):
        configure("info", "yaml")


def test_the_cli_refuses_an_unknown_format_and_changes_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fnstage.cli.main import app

    Store.open(sqlite_url(tmp_path)).close()
    result = CliRunner().invoke(app, ["runtime", "--data", str(tmp_path), "--log-format", "yaml"])
    assert result.exit_code != 0
    assert "--log-format: 'yaml' is not a format; use text or json" in result.output


def answers(runtime: RuntimeServer, text: str) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{runtime.url}/dev/user/me").text != text:
        assert time.monotonic() < deadline, runtime.log()
        time.sleep(0.05)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_runtime_tells_its_start_its_sync_each_load_its_cells_and_its_stop_in_json(tmp_path: Path) -> None:
    store = Store.open(sqlite_url(tmp_path))
    with store.write() as tx:
        user = tx.create_user("ada", is_admin=True)
    actor = Actor(user.id, user.name, True)
    services = Services.create(store)
    services.gateways.create(actor, "demo")
    services.deployments.save(actor, "demo", "dev/user/me", {"index.py": "def main(ctx):\n    return 1\n"})
    url = store.engine.url.render_as_string(hide_password=False)
    runtime = RuntimeServer(url, "demo", tmp_path / "runtime.log", env="dev")
    runtime.args += ["--log-format", "json"]
    with runtime:
        answers(runtime, "1")  # the first sync is done (the cell's health answers before it)
        services.deployments.save(
            actor, "demo", "dev/user/me", {"index.py": "def main(ctx):\n    return 2\n"}
        )
        answers(runtime, "2")
    lines = [json.loads(line) for line in runtime.log().splitlines() if line.startswith("{")]
    assert all(re.fullmatch(STAMP, line["time"]) for line in lines)
    events = [line.get("event") for line in lines]
    for expected in ("cell_started", "started", "sync", "loaded", "stopping", "cell_stopped", "stopped"):
        assert expected in events, (expected, runtime.log())
    loads = [line for line in lines if line.get("event") == "loaded"]
    assert [(x["name"], x["version"]) for x in loads] == [("dev/user/me", 1), ("dev/user/me", 2)]
    assert all(isinstance(x["ms"], float) for x in loads)
    assert "loaded dev/user/me v2" in loads[-1]["message"]
    store.close()


def test_a_bulk_load_logs_one_info_line_and_each_function_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """A cold start of 100,000 functions wrote 100,000 "loaded" lines at the default level: about 1 s
    of the supervisor's CPU (BENCHMARKS.md, "Many functions in a cell"). A load of BULK_LOAD rows or
    more says so in one line at info, each function at debug; each failure stays a warning."""
    from fnstage.runtime.loader import LiveVersion, LoadError
    from fnstage.runtime.loads import BULK_LOAD, apply_loads
    from fnstage.runtime.registry import Registry
    from fnstage.store.records import PublishedFunction

    def row(i: int) -> PublishedFunction:
        return PublishedFunction("demo", f"dev/fn/{i}", 1, "0.1.0", "index.py", b"", {}, "h", [], {}, i)

    def live(r: PublishedFunction) -> LiveVersion:
        return LiveVersion(r.gateway, r.name, 1, "0.1.0", frozenset(), {}, len, False, 30.0, 0.0, "h", 0.5)

    def events(level: int) -> list[str]:
        return [r.fields["event"] for r in caplog.records if r.levelno == level and hasattr(r, "fields")]

    caplog.set_level("DEBUG", logger="fnstage.runtime")
    rows = [row(i) for i in range(BULK_LOAD + 1)]
    results: list[LiveVersion | LoadError] = [live(r) for r in rows]
    results[3] = LoadError("NameError: name 'x' is not defined")
    reports: list[object] = []
    apply_loads(Registry(), rows, results, reports.append)
    assert events(logging.INFO) == ["loaded_many"]
    many = next(r for r in caplog.records if r.levelno == logging.INFO)
    assert many.fields["functions"] == BULK_LOAD and many.fields["failed"] == 1  # type: ignore[attr-defined]  # fields: set by the runtime's log filter, not on LogRecord
    assert events(logging.DEBUG) == ["loaded"] * BULK_LOAD
    assert events(logging.WARNING) == ["load_failed"]
    caplog.clear()
    apply_loads(Registry(), rows[:2], [live(r) for r in rows[:2]], reports.append)
    assert events(logging.INFO) == ["loaded", "loaded"]  # a few: a line each, as before


@pytest.mark.parametrize("command", ["runtime", "up"])
def test_the_cli_refuses_an_unknown_cell_interface_before_starting(tmp_path: Path, command: str) -> None:
    """`FNSTAGE_CELL_INTERFACE` is checked before anything starts: `up` would otherwise start a runtime
    child that dies of it, again and again."""
    from typer.testing import CliRunner

    from fnstage.cli.main import app

    Store.open(sqlite_url(tmp_path)).close()
    result = CliRunner().invoke(
        app, [command, "--data", str(tmp_path)], env={"FNSTAGE_CELL_INTERFACE": "wsgi"}
    )
    assert result.exit_code != 0
    assert "FNSTAGE_CELL_INTERFACE is 'wsgi': it must be one of asgi, rsgi" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fnstage.db"]  # nothing else made


@pytest.mark.parametrize("command", ["runtime", "up"])
def test_the_cli_refuses_a_temp_folder_too_long_for_cells_sockets(
    tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell serves a Unix socket in its folder under TMPDIR, and Linux binds one at a path of at most
    107 bytes: under a longer TMPDIR a cell of a long gateway name could not start and was restarted
    again and again, its reason nowhere. The CLI says so before anything starts."""
    from typer.testing import CliRunner

    from fnstage.cli.main import app

    Store.open(sqlite_url(tmp_path)).close()
    long = tmp_path / ("t" * 80)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    result = CliRunner().invoke(app, [command, "--data", str(tmp_path)])
    assert result.exit_code != 0
    assert f"TMPDIR is {str(long)!r}" in result.output
    assert "Linux allows 107" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fnstage.db", "t" * 80]  # nothing else made
    assert list(long.iterdir()) == []


def test_a_cells_socket_fits_under_any_temp_folder_the_check_allows(tmp_path: Path) -> None:
    """A cell's folder is named `{gateway}.{env}.{lock}` while its socket fits in Linux's 107 bytes,
    else by a hash of that name; `check_temp_dir` allows exactly the TMPDIR under which a hash's fits."""
    from fnstage.runtime.cell_server import UDS_PATH_MAX
    from fnstage.runtime.supervisor import (
        CELL_SOCKET,
        cell_folder_name,
        check_temp_dir,
        longest_cell_socket,
    )

    longest_slot = ("g" * 40, "staging", "a" * 64)
    assert cell_folder_name(Path("/tmp/fnstage-cells-12345678"), ("demo", "dev", "")) == "demo.dev"
    assert (
        cell_folder_name(Path("/tmp/fnstage-cells-12345678"), ("demo", "dev", "b" * 64))
        == "demo.dev." + "b" * 16
    )
    fits = "/" + "d" * (UDS_PATH_MAX - longest_cell_socket("/") - 1)  # "/" counts as no bytes
    assert longest_cell_socket(fits) == UDS_PATH_MAX
    check_temp_dir(fits)
    cells_folder = Path(fits) / "fnstage-cells-12345678"
    name = cell_folder_name(cells_folder, longest_slot)
    assert len(name) == 16 and name != cell_folder_name(cells_folder, ("g" * 40, "prod", "a" * 64))
    assert len(str(cells_folder / name / CELL_SOCKET)) == UDS_PATH_MAX
    with pytest.raises(ValueError, match="set TMPDIR to a folder of at most"):
        check_temp_dir(fits + "d")
    check_temp_dir("/tmp")
