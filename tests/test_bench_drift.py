"""The picows comparison's drift-proof ratios (loadtest/bench/drift.py, issue 19 item 4)."""

from __future__ import annotations

import statistics

import pytest
from loadtest.bench.drift import pileup, ratios
from loadtest.bench.scenarios.vs_picows import abba

SIDES = list(abba(3))  # jansamvad, picows, picows, jansamvad, jansamvad, picows


def test_bench_drift_fit_takes_a_linear_drift_out_that_tilts_the_medians() -> None:
    # Both sides cost the same; every run costs 0.3 more than the one before (the machine drifts).
    values = [10.0 + 0.3 * i for i in range(len(SIDES))]
    median_j = statistics.median(v for v, s in zip(values, SIDES, strict=True) if s == "jansamvad")
    median_p = statistics.median(v for v, s in zip(values, SIDES, strict=True) if s == "picows")
    assert median_p / median_j < 0.975  # the medians see picows 3 % ahead where there is no difference
    got = ratios(values, SIDES, "jansamvad", "picows")
    assert got["drift_fit"] == pytest.approx(1.0, abs=1e-3)
    assert got["slope_per_run"] == pytest.approx(0.3, abs=1e-3)


def test_bench_drift_fit_keeps_a_real_gap_between_the_sides() -> None:
    values = [(11.0 if s == "picows" else 10.0) + 0.3 * i for i, s in enumerate(SIDES)]
    got = ratios(values, SIDES, "jansamvad", "picows")
    level = 10.0 + 0.3 * (len(SIDES) - 1) / 2
    assert got["drift_fit"] == pytest.approx((level + 1.0) / level, abs=1e-3)


def test_bench_drift_ratios_without_a_figure_or_a_side_are_none() -> None:
    assert ratios([1.0, None, 2.0], ["jansamvad", "picows", "picows"], "jansamvad", "picows")["drift_fit"] is None
    assert ratios([1.0, 2.0], ["jansamvad", "jansamvad"], "jansamvad", "picows")["mean"] is None


def test_bench_drift_pileup_reads_time_wait_on_linux() -> None:
    assert isinstance(pileup()["tcp_timewait"], int)
