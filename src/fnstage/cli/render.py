"""How the CLI shows things: Rich tables and cards, coloured diffs, relative times, errors.

Every function here turns API JSON into a Rich renderable (or prints it); none of them talk to the
server, so they are easy to test with a recording console.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fnstage.cli.client import CliError

if TYPE_CHECKING:  # rich is imported when something is printed, not at start-up
    from rich.console import Console, RenderableType
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

ENVIRONMENTS = ("dev", "staging", "prod")
DIFF_STYLES = {"+": "green", "-": "red", "@": "cyan"}


def console(*, stderr: bool = False) -> Console:
    """A console on the current stdout/stderr (made per use, so redirected streams are honoured)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def say(message: str | Text, *, style: str | None = None) -> None:
    """Print one line, never wrapped (so it can be copied and grepped). A plain line is written as it
    is, without rich, so a command that only has one thing to say never imports it (issue 17)."""
    if isinstance(message, str) and style is None:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()  # as rich does: in order with what goes to stderr next
        return
    console().print(message, style=style, soft_wrap=True)


def print_error(error: CliError) -> None:
    from rich.text import Text

    err = console(stderr=True)
    line = Text.assemble(("error: ", "bold red"), (str(error), "red"))
    err.print(line, soft_wrap=True)
    # A build failure's message is its first problem; list them all when there are more.
    problems = _detail_lines(error.details) if error.code == "build_failed" else []
    for detail in problems if len(problems) > 1 else []:
        err.print(Text("  " + detail, style="red"), soft_wrap=True)
    if error.hint:
        err.print(Text.assemble(("hint: ", "bold"), error.hint), soft_wrap=True)


def _detail_lines(details: Any) -> list[str]:
    """Build problems and similar lists, one per line: `utils.py:3:1: cannot resolve requests`."""
    if not isinstance(details, list):
        return []
    lines = []
    for item in details[:20]:
        if isinstance(item, str):
            lines.append(item)
        elif isinstance(item, dict) and isinstance(item.get("message"), str):
            place = [str(item[k]) for k in ("file", "line", "col", "column") if item.get(k) is not None]
            lines.append(":".join(place) + ": " + item["message"] if place else item["message"])
    return lines


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """Columns under upper-case headers, no borders: a listing that fits a terminal and greps well."""
    from rich.table import Table

    table = Table(*columns, box=None, pad_edge=False)
    for row in rows:
        table.add_row(*("-" if value is None else str(value) for value in row))
    return table


def print_json(data: Any) -> None:
    """The API's JSON, unchanged, for scripts (`--json`); written directly, so rich is never imported."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# --- times -------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def relative_time(value: Any, now: datetime | None = None) -> str:
    """`3 min ago`, `2 h ago`, `5 days ago`; a date after 30 days; `-` when unknown."""
    when = parse_time(value)
    if when is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h ago"
    days = hours // 24
    if days < 30:
        return "1 day ago" if days == 1 else f"{days} days ago"
    return when.date().isoformat()


# --- gateways ----------------------------------------------------------------------------------


def _text(value: Any, default: str = "-") -> str:
    if value is None or value == "":
        return default
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return str(value)


def gateways_table(gateways: Sequence[Mapping[str, Any]], now: datetime | None = None) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD)
    for column in ("gateway", "dev → prod", "history limit", "dependencies", "created"):
        table.add_column(column)
    for gateway in gateways:
        table.add_row(
            Text(_text(gateway.get("id")), style="bold"),
            "allowed" if gateway.get("allow_dev_to_prod") else "via staging",
            _text(gateway.get("history_limit"), "default"),
            str(len(gateway.get("dependencies") or [])),
            f"{relative_time(gateway.get('created_at'), now)} by {_text(gateway.get('created_by'))}",
        )
    return table


def gateway_card(gateway: Mapping[str, Any], now: datetime | None = None) -> Panel:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row(
        "dev → prod",
        "allowed directly" if gateway.get("allow_dev_to_prod") else "only through staging",
    )
    grid.add_row("history limit", _text(gateway.get("history_limit"), "server default"))
    dependencies = gateway.get("dependencies") or []
    grid.add_row("dependencies", "\n".join(dependencies) if dependencies else "none")
    if gateway.get("lock_hash"):
        grid.add_row("lock", str(gateway["lock_hash"])[:12])
    grid.add_row(
        "created", f"{relative_time(gateway.get('created_at'), now)} by {_text(gateway.get('created_by'))}"
    )
    return Panel(grid, title=Text(_text(gateway.get("id")), style="bold"), title_align="left", expand=False)


# --- functions and history ---------------------------------------------------------------------


def functions_table(functions: Sequence[Mapping[str, Any]], now: datetime | None = None) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    # At 80 columns the long cells wrap (the name first gets the room), and none is cut off with "…".
    table.add_column("function", overflow="fold", min_width=16)
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("semver", no_wrap=True)
    table.add_column("files", justify="right", no_wrap=True)
    table.add_column("methods", overflow="fold")
    table.add_column("updated", no_wrap=True)
    table.add_column("by", overflow="ellipsis", max_width=12)  # who: a hint; the name is what matters
    for function in functions:
        table.add_row(
            Text(_text(function.get("name")), style="bold"),
            _text(function.get("version")),
            _text(function.get("semver")),
            str(len(function.get("file_hashes") or {})),
            ",".join(function.get("methods") or []) or "any",
            relative_time(function.get("updated_at"), now),
            _text(function.get("updated_by")),
        )
    return table


KIND_STYLES = {
    "create": "green",
    "save": "",
    "promote": "cyan",
    "release": "magenta",
    "rollback": "yellow",
    "rename": "blue",
    "delete": "red",
}


def history_table(entries: Sequence[Mapping[str, Any]], now: datetime | None = None) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("id", justify="right")
    table.add_column("version", justify="right")
    table.add_column("semver")
    table.add_column("kind")
    table.add_column("when")
    table.add_column("who")
    table.add_column("lock")
    table.add_column("note", overflow="fold")
    with_urls = any(entry.get("url") for entry in entries)
    if with_urls:  # each version's own URL (issue 14), when the control plane knows the runtime's
        table.add_column("url", overflow="fold")
    for entry in entries:
        kind = _text(entry.get("kind"))
        cells: list[str | Text] = [
            f"#{_text(entry.get('id'))}",
            _text(entry.get("version")),
            _text(entry.get("semver")),
            Text(kind, style=KIND_STYLES.get(kind, "")),
            relative_time(entry.get("created_at"), now),
            _text(entry.get("actor")),
            str(entry.get("lock_hash") or "none")[:12],
            _text(entry.get("note", entry.get("changelog")), ""),  # changelog: a server before `note`
        ]
        if with_urls:
            cells.append(_text(entry.get("url"), ""))
        table.add_row(*cells)
    return table


def lock_summary(lock: Mapping[str, Any]) -> str:
    """`lock 3f2a9c1b0d4e: humanize 4.9.0, requests 2.32.3`"""
    packages = lock.get("packages") or {}
    listed = ", ".join(f"{name} {version}" for name, version in sorted(packages.items()))
    return f"lock {str(lock.get('hash', ''))[:12]}: {listed or 'no packages'}"


def lock_change_line(change: Mapping[str, Any]) -> Text:
    """One package of a diff's lock: `lock: fnpkg 1.0 → 2.0`, added green, removed red."""
    from rich.text import Text

    status = change.get("status")
    name = _text(change.get("name"))
    if status == "added":
        return Text(f"lock: + {name} {_text(change.get('b'))}", style="green")
    if status == "removed":
        return Text(f"lock: - {name} {_text(change.get('a'))}", style="red")
    return Text(f"lock: {name} {_text(change.get('a'))} → {_text(change.get('b'))}", style="yellow")


# --- diff --------------------------------------------------------------------------------------


def diff_lines(path: str, a: str | None, b: str | None, a_label: str = "a", b_label: str = "b") -> list[Text]:
    """One file's unified diff as coloured lines: additions green, removals red, hunks cyan."""
    import difflib  # here, not at the top: only `diff` and `release` show one (8 ms at start-up)

    from rich.text import Text

    old = (a or "").splitlines(keepends=True)
    new = (b or "").splitlines(keepends=True)
    lines: list[Text] = []
    for raw in difflib.unified_diff(
        old,
        new,
        fromfile=f"{a_label}/{path}" if a is not None else "/dev/null",
        tofile=f"{b_label}/{path}" if b is not None else "/dev/null",
        lineterm="",
    ):
        line = raw.rstrip("\r\n")
        if line.startswith(("---", "+++")):
            lines.append(Text(line, style="bold"))
        else:
            lines.append(Text(line, style=DIFF_STYLES.get(line[:1], "")))
    return lines


def diff_view(diff: Mapping[str, Any]) -> list[Text]:
    """Every changed file's diff, then a summary line."""
    from rich.text import Text

    a_label = _text((diff.get("a") or {}).get("label") or (diff.get("a") or {}).get("ref"), "a")
    b_label = _text((diff.get("b") or {}).get("label") or (diff.get("b") or {}).get("ref"), "b")
    out: list[Text] = [
        Text.assemble(("diff ", "bold"), (a_label, "red"), " → ", (b_label, "green")),
    ]
    counts: dict[str, int] = {}
    for file in diff.get("files") or []:
        status = str(file.get("status"))
        counts[status] = counts.get(status, 0) + 1
        if status == "unchanged":
            continue
        out.append(Text(""))
        out.extend(diff_lines(str(file.get("path")), file.get("a"), file.get("b"), "a", "b"))
    for change in diff.get("lock") or []:
        out.append(Text(""))
        out.append(lock_change_line(change))
    changed = sum(n for status, n in counts.items() if status != "unchanged")
    out.append(Text(""))
    if changed == 0:
        out.append(Text("no differences: both have the same files", style="dim"))
    else:
        parts = [f"{counts[s]} {s}" for s in ("modified", "added", "removed") if counts.get(s)]
        summary = f"{changed} file{'s' if changed != 1 else ''} changed ({', '.join(parts)})"
        if counts.get("unchanged"):
            summary += f", {counts['unchanged']} unchanged"
        out.append(Text(summary, style="dim"))
    return out


# --- status ------------------------------------------------------------------------------------


def state_style(state: str) -> str:
    lowered = state.lower()
    if "fail" in lowered or "error" in lowered or "silent" in lowered:
        return "bold red"
    if lowered.startswith(("serving", "live")):
        return "bold green"
    if "qa" in lowered:
        return "bold yellow"
    return "bold blue"


def environment_panel(env: str, function: Mapping[str, Any] | None, now: datetime | None = None) -> Panel:
    """One environment's card; every card has the same five rows so cards side by side line up."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column()
    if not function:
        rows: list[Text] = [Text("not deployed", style="dim")] + [Text("")] * 4
        for row in rows:
            grid.add_row(row)
        return Panel(grid, title=env, title_align="left", border_style="dim", padding=(1, 2))
    state = _text(function.get("state"), "")
    runtime = function.get("runtime") or {}
    if runtime.get("summary") and runtime.get("summary") != "no runtime":
        state = f"{state} · {runtime['summary']}" if state else str(runtime["summary"])
    who = function.get("deployed_by") or function.get("updated_by") or function.get("created_by")
    when = function.get("deployed_at") or function.get("updated_at") or function.get("created_at")
    note = function.get("note")
    grid.add_row(Text(_text(function.get("semver")), style="bold"))
    grid.add_row(Text(f"version {_text(function.get('version'))}", style="dim"))
    grid.add_row(Text(state, style=state_style(state)) if state else Text(""))
    grid.add_row(Text(f"{_text(who)}, {relative_time(when, now)}"))
    grid.add_row(Text(f"“{note}”", style="italic") if note else Text(""))
    border = state_style(state).replace("bold ", "") if state else "white"
    return Panel(grid, title=Text(env, style="bold"), title_align="left", border_style=border, padding=(1, 2))


def status_view(overview: Mapping[str, Any], now: datetime | None = None) -> RenderableType:
    """dev → staging → prod as three panels side by side."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    environments = overview.get("environments") or {}
    grid = Table.grid(expand=True, padding=(0, 1))
    cells: list[RenderableType] = []
    for index, env in enumerate(ENVIRONMENTS):
        if index:
            grid.add_column(vertical="middle", width=1)
            cells.append(Text("→", style="dim"))
        grid.add_column(ratio=1)
        cells.append(environment_panel(env, environments.get(env), now))
    grid.add_row(*cells)
    title = Text(_text(overview.get("base")), style="bold")
    return Group(title, grid, *canary_lines(environments), *runtime_alerts(environments, now))


def canary_lines(environments: Mapping[str, Any]) -> list[Text]:
    """A running canary per environment (share, time left, both sides), or the decision that made the
    current version, with its reason."""
    from rich.text import Text

    from fnstage.cli.rollouts import describe

    out: list[Text] = []
    for env in ENVIRONMENTS:
        canary = (environments.get(env) or {}).get("canary")
        if canary:
            style = "red" if canary.get("state") in ("rolled_back", "aborted") else "cyan"
            out.extend(Text(line, style=style) for line in describe(canary))
    return out


def runtime_alerts(environments: Mapping[str, Any], now: datetime | None = None) -> list[Text]:
    """A line for every runtime that is not well: silent (no heartbeat), serving from memory because
    its change feed is disconnected, or running its cells without a sandbox protection."""
    from rich.text import Text

    out: list[Text] = []
    for env in ENVIRONMENTS:
        runtime = (environments.get(env) or {}).get("runtime") or {}
        for r in runtime.get("runtimes") or []:
            where = f"{env}: runtime {_text(r.get('host'))} pid {_text(r.get('pid'))}"
            if r.get("state") == "silent":
                heard = relative_time(r.get("heartbeat_at"), now)
                out.append(Text(f"{where} is silent (last heard {heard})", style="red"))
            elif r.get("feed_state") == "disconnected":
                since = relative_time(r.get("feed_since"), now)
                out.append(
                    Text(f"{where}: feed disconnected since {since}, serving from memory", style="yellow")
                )
            missing = (r.get("sandbox") or {}).get("missing") or []
            if missing:
                out.append(
                    Text(f"{where}: its cells run without " + "; ".join(map(str, missing)), style="yellow")
                )
    return out


# --- logs --------------------------------------------------------------------------------------


def _first(item: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if item.get(key) is not None:
            return item[key]
    return None


LOG_COLUMNS = (("WHEN", 11), ("STATUS", 6), ("DURATION", 10), ("VERSION", 7))


def logs_header() -> Text:
    """The column headers over `logs_view`'s lines: fixed-width columns, then the request id."""
    from rich.text import Text

    return Text("  ".join(name.ljust(width) for name, width in LOG_COLUMNS) + "  REQUEST ID", style="bold")


def logs_view(invocations: Sequence[Mapping[str, Any]], now: datetime | None = None) -> list[Text]:
    """One line per invocation under `logs_header` (when, status, duration, version, request id, and
    the trigger of a scheduled run), then the lines it logged and its error, indented."""
    from rich.text import Text

    (_, when_w), (_, status_w), (_, duration_w), (_, version_w) = LOG_COLUMNS
    out: list[Text] = []
    for invocation in invocations:
        status = _first(invocation, ("status", "status_code"))
        status_style = "red" if isinstance(status, int) and status >= 500 else "yellow"
        if isinstance(status, int) and status < 400:
            status_style = "green"
        duration = _first(invocation, ("duration_ms", "duration"))
        took = f"{round(duration, 1):g} ms" if isinstance(duration, int | float) else "-"
        version = invocation.get("version")
        header = Text.assemble(
            (
                relative_time(_first(invocation, ("time", "at", "started_at", "created_at")), now).ljust(
                    when_w
                ),
                "dim",
            ),
            "  ",
            (_text(status).ljust(status_w), status_style),
            "  ",
            (took.ljust(duration_w), "dim"),
            "  ",
            (("-" if version is None else f"v{version}").ljust(version_w), "dim"),
            "  ",
            _text(invocation.get("request_id"), "-"),
        )
        if invocation.get("trigger"):  # a scheduled run, not an HTTP request
            header.append(f"  trigger {invocation['trigger']}", style="cyan")
        out.append(header)
        lines = _first(invocation, ("logs", "log", "lines")) or []
        if isinstance(lines, str):
            lines = lines.splitlines()
        for line in lines:
            out.append(Text("  " + str(line)))
        error = _first(invocation, ("error", "traceback"))
        if error:
            for line in str(error).splitlines():
                out.append(Text("  " + line, style="red"))
    return out
