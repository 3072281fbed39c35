"""`--help` printed from text rendered ahead of time (quick_help.py) is what typer renders live, and
is printed only where it would be the same; a stale cache fails with the command that rewrites it."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from typer._click.utils import _detect_program_name  # the rule quick_help.program_name copies

from fnstage.cli import quick_help, reference


def test_the_cached_help_texts_are_what_typer_renders() -> None:
    stale = reference.stale_help_texts(reference.help_texts())
    assert stale == [], f"stale help texts {stale}: run scripts/cli-reference and commit them"


def _run(words: list[str], env: dict[str, str], *, terminal: bool, program: str) -> tuple[bytes, str]:
    """(stdout, imported module names) of `PROGRAM WORDS...` in a fresh interpreter, on a pseudo
    terminal or a pipe."""
    if program == "python -m fnstage":
        command = [sys.executable, "-X", "importtime", "-m", "fnstage", *words]
    else:  # the installed script: its __main__ is a plain file named `fnstage`
        code = "import sys\nsys.argv[0] = '/bin/fnstage'\nfrom fnstage.cli.entry import main\nmain()"
        command = [sys.executable, "-X", "importtime", "-c", code, *words]
    if not terminal:
        result = subprocess.run(command, env=env, capture_output=True, timeout=60, check=True)
        return result.stdout, result.stderr.decode()
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            command, env=env, stdout=follower, stderr=subprocess.PIPE, timeout=60, check=True
        )
        os.close(follower)
        follower = -1
        out = io.BytesIO()
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            out.write(chunk)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return out.getvalue().replace(b"\r\n", b"\n"), result.stderr.decode()  # the terminal's newlines


def _environment() -> dict[str, str]:
    unset = {*quick_help.RENDERING_VARIABLES, "NO_COLOR", "COLORTERM"}
    return {
        **{k: v for k, v in os.environ.items() if k not in unset},
        "COLUMNS": "80",
        "TERM": "xterm-256color",
    }


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
@pytest.mark.parametrize("program", quick_help.PROGRAMS)
@pytest.mark.parametrize("words", [["--help"], ["gateway", "-h"], ["push", "--help"]], ids=" ".join)
def test_a_cached_help_is_the_live_one_byte_for_byte(words: list[str], program: str, terminal: bool) -> None:
    env = _environment()
    cached, cached_imports = _run(words, env, terminal=terminal, program=program)
    # TERMINAL_WIDTH at the same 80 columns sends it to typer and rich: the same layout, rendered live
    live, live_imports = _run(words, {**env, "TERMINAL_WIDTH": "80"}, terminal=terminal, program=program)
    assert "| typer" in live_imports and "| typer" not in cached_imports  # each took its own path
    assert (b"\x1b[" in cached) == terminal  # colour on a terminal only
    assert cached == live


def test_a_command_path_maps_to_its_file() -> None:
    assert Path(quick_help.help_file(())).name == "fnstage.json"
    assert Path(quick_help.help_file(("gateway", "create"))).name == "fnstage.gateway.create.json"
    assert Path(quick_help.help_file(("status",))).exists()


class _Stream(io.StringIO):
    def __init__(self, *, tty: bool, encoding: str = "utf-8") -> None:
        super().__init__()
        self._tty, self._encoding = tty, encoding

    def isatty(self) -> bool:
        return self._tty

    @property
    def encoding(self) -> str:  # type: ignore[override]  # StringIO's is None; a real stream's is set
        return self._encoding


BASE = {"COLUMNS": "80", "TERM": "xterm"}


def test_the_cache_is_used_only_where_it_is_what_typer_would_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/fnstage"])
    monkeypatch.setitem(sys.modules, "__main__", type(sys)("__main__"))  # a script: no __package__
    pipe, tty = _Stream(tty=False), _Stream(tty=True)
    assert quick_help.cached_help(["status", "--help"], BASE, pipe) is not None
    assert "\x1b[" in (quick_help.cached_help(["status", "-h"], BASE, tty) or "")
    assert quick_help.cached_help(["--help"], {**BASE, "COLUMNS": "200"}, pipe) is not None  # wider: 80
    for argv, env, stream in [
        (["status"], BASE, pipe),  # not a help request
        (["status", "user/me", "--help"], BASE, pipe),  # an argument first: click decides
        (["--gateway", "x", "status", "--help"], BASE, pipe),
        (["secrets", "--help"], BASE, pipe),  # hidden: not cached
        (["no-such", "--help"], BASE, pipe),
        (["../etc", "--help"], BASE, pipe),
        (["status", "--help"], {**BASE, "COLUMNS": "79"}, pipe),  # narrower: typer wraps it
        (["status", "--help"], {**BASE, "NO_COLOR": "1"}, tty),  # bold without colour
        (["status", "--help"], {**BASE, "TERM": "dumb"}, tty),
        (["status", "--help"], {**BASE, "FORCE_COLOR": "1"}, pipe),
        (["status", "--help"], {**BASE, "GITHUB_ACTIONS": "true"}, pipe),
        (["status", "--help"], BASE, _Stream(tty=False, encoding="ascii")),  # ASCII panels
    ]:
        assert quick_help.cached_help(argv, env, stream) is None, (argv, env)
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/fnstage-old"])
    assert quick_help.cached_help(["status", "--help"], BASE, pipe) is None  # another program name


@pytest.mark.parametrize(
    ("argv0", "package"),
    [
        ("/usr/bin/fnstage", None),
        ("fnstage", ""),
        ("/src/fnstage/__main__.py", "fnstage"),
        ("/src/fnstage/cli/entry.py", "fnstage.cli"),
    ],
)
def test_the_program_name_is_the_one_click_shows(argv0: str, package: str | None) -> None:
    main = type(sys)("__main__")
    main.__package__ = package
    assert quick_help.program_name(argv0, package) == _detect_program_name(argv0, main)
