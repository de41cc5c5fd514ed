"""The channels phase diagram on constructed per-seed bits: the shift of x9 over x0 per size, paired by seed, and the
smallest size whose interval lies entirely beyond 1 bit ("none" when no size's does)."""

import pandas as pd
import pytest

from hyperstition.analysis.channels import ChannelArm, beyond, phase_diagram
from hyperstition.analysis.stats import Estimate

SIZES = ["small", "mid", "big"]
# Per-seed x9 - x0 shifts (3 seeds) for each (channel, size): transcript first clears 1 bit at `mid`; described's
# mean passes -1 at `mid` but its interval reaches past 0 (seed spread), so it first clears at `big`; quoted never.
SHIFTS = {
    ("transcript", "small"): [-0.4, -0.5, -0.6],
    ("transcript", "mid"): [-2.0, -2.1, -1.9],
    ("transcript", "big"): [-4.0, -4.2, -3.8],
    ("described", "small"): [0.1, -0.1, 0.0],
    ("described", "mid"): [-0.5, -3.0, -2.5],
    ("described", "big"): [1.9, 2.0, 2.1],  # a shift toward aligned counts: the magnitude is what moves
    ("quoted", "small"): [0.2, -0.2, 0.0],
    ("quoted", "mid"): [-0.9, -1.0, -1.1],
    ("quoted", "big"): [-1.2, -0.7, -1.4],
}


def _frame() -> tuple[pd.DataFrame, list[ChannelArm]]:
    arms, rows = [], []
    for size in SIZES:
        x0 = ChannelArm(f"x0@{size}", "none", None, 0.0, size)
        arms.append(x0)
        for seed in range(3):
            rows.append({"arm": x0.arm, "seed": seed, "context": "observed", "value": 10.0 + seed})
        for channel in ("transcript", "quoted", "described"):
            arm = ChannelArm(f"{channel}_x9@{size}", "none", channel, 9.0, size)
            arms.append(arm)
            for seed, shift in enumerate(SHIFTS[(channel, size)]):
                rows.append({"arm": arm.arm, "seed": seed, "context": "observed", "value": 10.0 + seed + shift})
    return pd.DataFrame(rows), arms


def test_the_smallest_size_beyond_one_bit():
    bits, arms = _frame()
    rows = {r.channel: r for r in phase_diagram(bits, arms, SIZES, ["observed"])}
    assert set(rows) == {"transcript", "quoted", "described"}
    assert rows["transcript"].smallest == "mid"
    assert rows["described"].smallest == "big"
    assert rows["quoted"].smallest is None
    for (channel, size), shifts in SHIFTS.items():
        est = rows[channel].shifts[size]
        assert est.value == pytest.approx(sum(shifts) / 3) and est.n == 3
    assert rows["described"].shifts["mid"].value < -1 < rows["described"].shifts["mid"].ci_high
    assert all(r.dose == 9.0 and r.link == "none" for r in rows.values())


def test_no_size_passes_under_a_higher_threshold_and_order_is_the_callers():
    bits, arms = _frame()
    rows = {r.channel: r for r in phase_diagram(bits, arms, SIZES, ["observed"], threshold=5.0)}
    assert all(r.smallest is None for r in rows.values())
    reversed_rows = {r.channel: r for r in phase_diagram(bits, arms, SIZES[::-1], ["observed"])}
    assert reversed_rows["transcript"].smallest == "big" and list(reversed_rows["transcript"].shifts) == SIZES[::-1]


def test_a_size_without_its_x0_is_left_out():
    bits, arms = _frame()
    rows = phase_diagram(bits, [a for a in arms if a.arm != "x0@small"], SIZES, ["observed"])
    assert all(list(r.shifts) == ["mid", "big"] for r in rows)
    assert phase_diagram(bits, [ChannelArm("x0", "none", None)], SIZES, ["observed"]) == []  # no size axis


def test_beyond_needs_the_whole_interval():
    assert beyond(Estimate(-2.0, -2.5, -1.5, 3)) and beyond(Estimate(2.0, 1.5, 2.5, 3))
    assert not beyond(Estimate(-2.0, -3.0, -0.5, 3)) and not beyond(Estimate(-2.0, float("nan"), float("nan"), 1))
