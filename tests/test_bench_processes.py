"""The benchmarks' process helpers (bench/processes.py): a CPU-time ratio is only as true as the sum
it divides, so a process listed twice must not be counted twice."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

# bench/ is not a package: its modules import each other by name, from that folder on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from processes import cpu_seconds, descendants


@pytest.fixture
def busy_then_idle() -> subprocess.Popen[bytes]:
    """A process that spends a little CPU (at least a clock tick) and then sleeps: its CPU time no
    longer changes while the test reads it."""
    code = "import time\nend = time.process_time() + 0.05\nwhile time.process_time() < end: pass\nprint(flush=True)\ntime.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()  # its busy part is done
    time.sleep(0.05)
    yield process
    process.kill()
    process.wait()


def test_a_process_listed_twice_is_counted_once(busy_then_idle: subprocess.Popen[bytes]) -> None:
    once = cpu_seconds([busy_then_idle.pid])
    assert once > 0
    assert cpu_seconds([busy_then_idle.pid, busy_then_idle.pid]) == once


def test_a_tree_lists_its_root_once(busy_then_idle: subprocess.Popen[bytes]) -> None:
    assert descendants(busy_then_idle.pid) == [busy_then_idle.pid]
