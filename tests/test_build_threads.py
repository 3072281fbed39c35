"""Builds on several threads at once, as the API's request threads make them (concurrent saves)."""

from __future__ import annotations

import threading

from fnstage.build import build

# a module large enough that building its syntax tree takes many allocations (collections run inside)
ENTRYPOINT = (
    "import json\n\n"
    + "\n".join(
        f"def f{i}(x):\n    if x:\n        return [y for y in range(x) if y % 2]\n    return {{'a': (1, [3, 4])}}\n"
        for i in range(150)
    )
    + "\ndef main(ctx):\n    return json.dumps(f1(3))\n"
)


class _Cycle:
    """Garbage whose collection runs Python code (`__del__`): the interpreter may switch threads there,
    as it does in a server full of sockets, generators and futures."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        sum(range(50))


def test_builds_on_many_threads_at_once_all_succeed() -> None:
    """CPython 3.11 keeps one recursion counter for every thread's syntax-tree conversion (gh-106905):
    two threads building at once failed one save now and then with `SystemError: AST constructor
    recursion depth mismatch` (seen in the fast suite's concurrent-saves test under load)."""
    failures: list[BaseException] = []

    def saves() -> None:
        for _ in range(60):
            _Cycle()
            try:
                build({"index.py": ENTRYPOINT}, "index.py")
            except BaseException as exc:  # any failure is the test's finding, reported below
                failures.append(exc)
                return

    threads = [threading.Thread(target=saves) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, [f"{type(e).__name__}: {e}" for e in failures]
