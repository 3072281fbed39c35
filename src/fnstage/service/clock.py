"""The time a scheduler sees: the system's, or (for tests of real processes) one read from a file.

Tests drive `fnstage up` processes across ticks without waiting minutes: they set
`FNSTAGE_TEST_CLOCK_FILE` to a file holding an ISO 8601 time and rewrite it to move time on. Every
process reading the same file sees the same time. Production never sets it; `fnstage up` says loudly
when it is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fnstage.store.store import now

Clock = Callable[[], datetime]
CLOCK_FILE_VARIABLE = "FNSTAGE_TEST_CLOCK_FILE"


class FileClock:
    """The time written in `path` (ISO 8601; UTC when it names no zone)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> datetime:
        moment = datetime.fromisoformat(self.path.read_text().strip())
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def clock_from_env() -> tuple[Clock, str | None]:
    """The clock, and the file it reads when it is not the system's."""
    configured = os.environ.get(CLOCK_FILE_VARIABLE)
    if configured:
        return FileClock(Path(configured)), configured
    return now, None
