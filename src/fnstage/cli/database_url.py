"""The database URL of the server-side commands (`up`, `runtime`, `gateway credentials`).

A password given as `--database-url` is in every local user's `ps` and `/proc/PID/cmdline` for as long
as the process runs, so the URL is better read from `FNSTAGE_DATABASE_URL` or from a file only its
owner can read (`--database-url-file`); a password on the command line still works, with a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from fnstage.cli.client import CliError

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="FNSTAGE_DATABASE_URL",
        metavar="URL",
        help="The store: postgresql://... or sqlite:///PATH (default: SQLite in the --data folder). "
        "A password here is visible in ps: prefer $FNSTAGE_DATABASE_URL or --database-url-file.",
        show_default=False,
    ),
]
DatabaseUrlFileOption = Annotated[
    Path | None,
    typer.Option(
        "--database-url-file",
        metavar="FILE",
        help="Read the database URL from FILE (one line), keeping its password out of ps.",
        show_default=False,
    ),
]

ARGV_PASSWORD_WARNING = (
    "warning: the database password in --database-url is visible to every local user (ps, "
    "/proc/PID/cmdline); set FNSTAGE_DATABASE_URL or use --database-url-file FILE instead"
)


def database_url_of(ctx: typer.Context, given: str | None, file: Path | None) -> str | None:
    """The URL a command was given, from the option, its variable or the file; warns on stderr when
    the command line carries a password."""
    source = ctx.get_parameter_source("database_url")  # typer's own click: compare by name
    from_command_line = source is not None and source.name == "COMMANDLINE"
    url, warning = choose_database_url(given, from_command_line=from_command_line, file=file)
    if warning:
        typer.secho(warning, err=True, fg="yellow")
    return url


def choose_database_url(
    given: str | None, *, from_command_line: bool, file: Path | None
) -> tuple[str | None, str | None]:
    """(the URL, a warning or None): the pure rule behind `database_url_of`."""
    if file is not None:
        if given is not None:
            raise CliError("pass --database-url (or FNSTAGE_DATABASE_URL) or --database-url-file, not both")
        return _read_url_file(file), None
    if given is not None and from_command_line and _has_password(given):
        return given, ARGV_PASSWORD_WARNING
    return given, None


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False  # not a URL at all: the store refuses it with its own message


def _read_url_file(file: Path) -> str:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise CliError(f"cannot read the database URL file {file}: {reason}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise CliError(f"the database URL file {file} is empty: write the URL on its first line")
    if len(lines) > 1:
        raise CliError(f"the database URL file {file} must hold one line, the URL; it has {len(lines)}")
    return lines[0]


SecretKeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--secret-key-file",
        envvar="FNSTAGE_SECRET_KEY_FILE",
        metavar="FILE",
        help="The server key that encrypts secrets (Fernet keys, one a line, newest first), unless "
        "$FNSTAGE_SECRET_KEY holds it. `fnstage up` makes DATA/secret-key on its first start.",
        show_default=False,
    ),
]
