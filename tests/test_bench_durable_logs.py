"""The durable-logs bench's interleaving (bench/durable_logs.py --interleave): its paired ratio is only
fair if each side gets as many slices as the other and a steady drift of the host's speed falls on
both alike."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# bench/ is not a package: its modules import each other by name, from that folder on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from durable_logs import build_parser, order, paired_ratios, parse_arguments


def test_slices_go_on_off_off_on() -> None:
    assert order(3) == [0, 1, 1, 0, 0, 1]


@pytest.mark.parametrize("slices", [2, 4, 6, 10])
def test_a_linear_drift_falls_on_both_sides_alike(slices: int) -> None:
    """With an even count of slices a side, the sums of the slices' positions are equal: a host that
    slows (or speeds) by the same step each slice costs both sides the same."""
    taken = order(slices)
    assert taken.count(0) == taken.count(1) == slices
    positions = [sum(i for i, side in enumerate(taken) if side == which) for which in (0, 1)]
    assert positions[0] == positions[1]


def test_each_adjacent_pair_gives_on_over_off() -> None:
    """Slices on, off, off, on: on's rate over off's in each pair, whichever came first."""
    assert paired_ratios(order(2), [90.0, 100.0, 200.0, 180.0]) == [0.9, 0.9]


@pytest.mark.parametrize("count", ["1", "3", "-2"])
def test_an_odd_or_too_small_slice_count_is_refused_before_anything_starts(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An odd count leaves one side a slice later on average: a drift would no longer cancel."""
    with pytest.raises(SystemExit) as exited:
        parse_arguments(build_parser(), ["--interleave", count])
    assert exited.value.code == 2
    assert (
        f"--interleave must be an even number of slices a side, 2 or more, not {count}"
        in capsys.readouterr().err
    )


def test_an_even_slice_count_is_taken() -> None:
    assert parse_arguments(build_parser(), ["--interleave", "4"]).interleave == 4
