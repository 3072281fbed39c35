"""Request ids made by the runtime: fresh, well formed, and never the same in a forked process."""

from __future__ import annotations

import os
import re

from fnstage.runtime.request_ids import new_request_id


def test_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [new_request_id() for _ in range(5000)]  # many batches
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_process_hands_out_ids_of_its_own() -> None:
    new_request_id()  # the parent holds a batch now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, "".join(new_request_id() for _ in range(10)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parents = {new_request_id() for _ in range(300)}
    childs = {child[i : i + 32] for i in range(0, len(child), 32)}
    assert len(childs) == 10 and not childs & parents
