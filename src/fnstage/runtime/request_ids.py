"""Request ids for requests that come without one: 16 random bytes from the kernel, as hex.

Read 256 at a time: `os.urandom(16)` on every request was a system call per request on the hot path.
The ids stay as unpredictable as before (the same source). A forked process (every cell is forked)
starts with none in hand, so no two processes ever hand out the same ids.
"""

from __future__ import annotations

import os

_BATCH = 256
_SLICES = [slice(i, i + 32) for i in range(32, 32 * _BATCH, 32)]  # each id of a batch, but the first
# what is in hand; the app pops from it itself (a call less a request), calling `new_request_id` when empty
ready: list[str] = []


def new_request_id() -> str:
    """A fresh id: 32 hex digits."""
    if ready:
        return ready.pop()
    batch = os.urandom(16 * _BATCH).hex()
    ready.extend(map(batch.__getitem__, _SLICES))  # C all along: a generator cost 30 bytecodes an id
    return batch[:32]


os.register_at_fork(after_in_child=ready.clear)
