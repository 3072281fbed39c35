"""`fnstage ... --help` from text rendered ahead of time, printed without importing typer or rich.

Rendering help live imports typer and its rich layout (about 200 ms of CPU, issue 17: the CLI answers
in 100 ms). `scripts/cli-reference` renders every visible command's help at 80 columns into
`help/<fnstage.command.path>.json`, as typer prints it to a pipe (`plain`) and to a colour terminal
(`color`), for both program names click shows (`fnstage`, and `python -m fnstage`). A cached text is
printed only where the live one would be the same but for width: the output is 80 columns or wider
and UTF-8, and no variable that changes rich's or typer's choices is set. Anything else (a narrow
terminal, NO_COLOR on a terminal, FORCE_COLOR, a hidden command, another program name) returns None
and the help is rendered live, as before. tests/test_cli_help_cache.py renders every text live and
compares, so a stale cache fails with the command that rewrites it.

Only `os`, `sys` and `json` are imported here: this module is on the path of every `fnstage` run.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # not `typing`'s, which this path does not otherwise import
if TYPE_CHECKING:
    from collections.abc import Mapping

WIDTH = 80
HELP_DIR = os.path.join(os.path.dirname(__file__), "help")
PROGRAMS = ("fnstage", "python -m fnstage")
HELP_OPTIONS = ("--help", "-h")
# Read by rich or typer when they render help: with any of them set, the live text may differ.
RENDERING_VARIABLES = (
    "FORCE_COLOR",
    "PY_COLORS",
    "GITHUB_ACTIONS",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "TERMINAL_WIDTH",
    "_TYPER_FORCE_DISABLE_TERMINAL",
    "JUPYTER_COLUMNS",
    "JUPYTER_LINES",
)
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def help_file(path: tuple[str, ...] | list[str]) -> str:
    """The file holding the help of `fnstage PATH...`."""
    return os.path.join(HELP_DIR, ".".join(("fnstage", *path)) + ".json")


def program_name(argv0: str, main_package: str | None) -> str:
    """The program name click shows in `Usage:` (its `_detect_program_name`, for Linux and macOS)."""
    if not main_package:
        return os.path.basename(argv0)  # a script, such as the installed `fnstage`
    name = os.path.splitext(os.path.basename(argv0))[0]
    module = main_package if name == "__main__" else f"{main_package}.{name}"
    return f"python -m {module.lstrip('.')}"


def terminal_width(environ: Mapping[str, str]) -> int:
    """The width rich gives its console: $COLUMNS, else the first standard stream's terminal, else 80."""
    columns = environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns)
    for descriptor in (0, 1, 2):
        try:
            return os.get_terminal_size(descriptor).columns or WIDTH
        except (AttributeError, ValueError, OSError):  # not a terminal: rich tries the next one
            continue
    return WIDTH


def variant(environ: Mapping[str, str], is_terminal: bool) -> str | None:
    """Which rendering the live help would be: `plain` to a pipe or file, `color` to a terminal;
    None when it would be another (NO_COLOR or a dumb terminal: styles without colours)."""
    if not is_terminal:
        return "plain"
    if environ.get("NO_COLOR", "") != "" or environ.get("TERM", "").strip().lower() in ("dumb", "unknown"):
        return None
    return "color"


def cached_help(argv: list[str], environ: Mapping[str, str], stdout: object) -> str | None:
    """The help `fnstage ARGV` prints, when ARGV only asks for a command's help and a text rendered
    ahead of time is what typer would print; else None (render it live)."""
    if not argv or argv[-1] not in HELP_OPTIONS:
        return None
    path = argv[:-1]
    if not all(word and set(word) <= _NAME_CHARACTERS and word[0] != "-" for word in path):
        return None  # an option or an argument before --help: click decides what it means
    if any(name in environ for name in RENDERING_VARIABLES):
        return None
    if not str(getattr(stdout, "encoding", "") or "").lower().startswith("utf"):
        return None  # rich would draw the panels in ASCII
    isatty = getattr(stdout, "isatty", None)
    kind = variant(environ, bool(isatty and isatty()))
    if kind is None or terminal_width(environ) < WIDTH:
        return None
    main = sys.modules.get("__main__")
    program = program_name(sys.argv[0], getattr(main, "__package__", None))
    if program not in PROGRAMS:
        return None
    try:
        with open(help_file(path), encoding="utf-8") as file:
            texts = json.load(file)
    except FileNotFoundError:
        return None  # a hidden or unknown command: click's answer, live
    return str(texts["usage"][program][kind]) + str(texts["body"][kind])
