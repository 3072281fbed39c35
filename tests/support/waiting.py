"""Waiting for something a running server does, by polling it, instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(check: Callable[[], object], timeout: float = 20.0, every: float = 0.1) -> None:
    """Call `check` until it returns a true value without raising AssertionError; after `timeout`
    seconds, fail with its last AssertionError (or say that it stayed false)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
            failure: AssertionError = AssertionError(f"still false after {timeout:g} s: {check}")
        except AssertionError as error:
            failure = error
        if time.monotonic() > deadline:
            raise failure
        time.sleep(every)
