"""What the tests of pending versions share (a cold start whose loads are deferred)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from support.cells import ANSWER

ROOT = Path(__file__).resolve().parents[2]
FAILS = "x = 1 / 0\n" + ANSWER % 0  # a module that fails at import


def bulk_copies() -> Callable[..., None]:
    """bench/stores.py's `bulk_copies`: copies of a gateway's one function, in SQL (1,000 saves take
    longer than this test)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fnstage_bench_stores", ROOT / "bench" / "stores.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    copies: Callable[..., None] = module.bulk_copies
    return copies
