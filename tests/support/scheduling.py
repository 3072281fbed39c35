"""How ./scripts/test spreads the tests over pytest-xdist's workers (`-n N --dist loadgroup`).

Each test goes to whichever worker is free, except the tests of a module that defines a module- or
class-scoped fixture (a server, a cluster, a built environment): those run together on one worker, so
the fixture starts once, not once per worker. Groups go out first, largest first, while single tests
fill the gaps.

pytest-xdist's own `loadgroup` (tests marked `xdist_group`) renames each test's node id to carry its
group, which pytest 9.2 no longer allows (the id is derived, not stored), so the grouping is decided
here, on the controller, from the test file's text.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

SHARED_FIXTURE = re.compile(r"""@pytest\.fixture\([^)]*scope=["'](module|class)["']""")


@functools.cache
def defines_a_shared_fixture(path: Path) -> bool:
    try:
        return SHARED_FIXTURE.search(path.read_text()) is not None
    except OSError:  # not a file of ours (a doctest's module, say): no grouping
        return False


class SharedFixtureScheduling(LoadScopeScheduling):
    """One unit of work per test, or per module when its tests share a fixture."""

    def __init__(self, config: pytest.Config, log: object | None = None) -> None:
        super().__init__(config, log)
        self.rootpath = config.rootpath

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return path if defines_a_shared_fixture(self.rootpath / path) else nodeid
