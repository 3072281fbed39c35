"""The `fnstage` command (and `python -m fnstage`): a command's help from the text rendered ahead of
time when it fits (quick_help.py), else the Typer app, whose root imports only the command that runs."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from fnstage.cli.quick_help import cached_help

    text = cached_help(sys.argv[1:], os.environ, sys.stdout)
    if text is None:
        from fnstage.cli.main import app

        app()
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `fnstage --help | head`: as click, stop quietly with status 1
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit fails too
        raise SystemExit(1) from None
