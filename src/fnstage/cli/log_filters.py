"""`fnstage logs` filters as typed: `--since 10m`, `--until 2026-11-30T18:00`, `--status 5xx`."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from fnstage.cli.client import CliError

_AGO = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# `store.invocation_log.STATUS_CLASSES`' names, which the API checks too; not imported from there, as
# that module loads SQLAlchemy and every `fnstage` run pays for what the CLI imports
# (tests/test_invocation_log.py keeps the two equal)
STATUS_CLASSES = ("ok", "error", "2xx", "3xx", "4xx", "5xx")


def moment(option: str, text: str, now: float | None = None) -> float:
    """Seconds since the epoch for `30s`, `10m`, `2h`, `1d` (that long ago) or an ISO 8601 time (UTC
    when it names no zone)."""
    text = text.strip()
    now = time.time() if now is None else now
    ago = _AGO.match(text)
    if ago:
        return now - float(ago.group(1)) * _UNITS[ago.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"{option} {text!r} is neither a duration (30s, 10m, 2h, 1d) nor a time (2026-11-30T18:00, UTC "
            "unless it says otherwise)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def check_window(since: str | None, start: float | None, until: str | None, end: float | None) -> None:
    """Refuse a window no invocation can be in (`--since 1h --until 2h`: the end before the start)."""
    if start is not None and end is not None and end <= start:
        raise CliError(
            f"--until {until!r} is not later than --since {since!r}: --since is when the window starts "
            "(30s, 10m, 2h, 1d ago, or a time), --until when it ends, so no invocation can match"
        )


def status(text: str) -> str:
    """An HTTP status (100-599) or a class: ok, error (or 5xx), 2xx, 3xx, 4xx."""
    value = text.strip().lower()
    if value in STATUS_CLASSES or (value.isdigit() and 100 <= int(value) <= 599):
        return value
    raise CliError(
        f"--status {text!r} is not an HTTP status (such as 500) nor one of: {', '.join(STATUS_CLASSES)}"
    )
