"""huberkl.stats: the t intervals, verdicts and detectable differences behind the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from huberkl import stats

finite = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, allow_infinity=False)


def test_t_interval_equals_scipys():
    x = [0.61, 0.58, 0.66, 0.60]
    iv = stats.t_interval(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert iv.low == pytest.approx(lo, abs=1e-15) and iv.high == pytest.approx(hi, abs=1e-15)
    assert iv.n == 4 and iv.sd == pytest.approx(np.std(x, ddof=1), abs=1e-15)


def test_paired_uses_the_common_seeds_only():
    a = {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.9}
    b = {0: 0.4, 1: 0.55, 2: 0.6}
    iv = stats.paired(a, b)
    assert iv.n == 3 and iv.mean == pytest.approx((0.1 + 0.05 + 0.1) / 3, abs=1e-15)
    with pytest.raises(ValueError, match="no seed in common"):
        stats.paired({0: 1.0}, {1: 1.0})


@given(st.lists(finite, min_size=2, max_size=12))
@settings(max_examples=200, deadline=None)
def test_interval_holds_the_mean_and_narrows_with_confidence(values):
    wide = stats.t_interval(values, 0.99)
    iv = stats.t_interval(values)
    assert iv.low <= iv.mean <= iv.high
    assert wide.low <= iv.low + 1e-15 and iv.high <= wide.high + 1e-15


def test_verdicts_follow_the_interval():
    up = stats.t_interval([0.02, 0.03, 0.025, 0.028])
    down = stats.t_interval([-0.02, -0.03, -0.025, -0.028])
    unsure = stats.t_interval([0.02, -0.01, 0.03, -0.02])
    assert stats.verdict(up) == "supported"
    assert stats.verdict(down) == "contradicted"
    v = stats.verdict(unsure)
    assert v.startswith("no detectable difference (±") and v.endswith(" points)")
    assert f"±{100 * unsure.half:.1f}" in v
    assert stats.verdict(stats.t_interval([0.5])).startswith("cannot test")
    with pytest.raises(ValueError, match="claim"):
        stats.verdict(up, "smaller")


def test_equivalence_is_judged_against_the_margin_not_zero():
    """Table 5's case: linear − log in [−0.7, −0.2] points differs from zero, yet lies
    inside a 1-point margin, so "alike" and "at most slightly worse" are supported."""
    slight = stats.Interval(-0.0045, -0.007, -0.002, 4, 0.002)
    assert stats.verdict(slight) == "contradicted"  # as a "greater" claim it is a loss
    assert stats.verdict(slight, "alike", margin=0.01) == "supported"
    assert stats.verdict(slight, "not-worse", margin=0.01) == "supported"
    far = stats.Interval(-0.03, -0.04, -0.02, 4, 0.01)
    assert stats.verdict(far, "alike", margin=0.01).startswith("contradicted (they differ by more")
    assert stats.verdict(far, "not-worse", margin=0.01).startswith("contradicted (it loses more")
    better = stats.Interval(0.03, 0.02, 0.04, 4, 0.01)
    assert stats.verdict(better, "not-worse", margin=0.01) == "supported"
    assert stats.verdict(better, "alike", margin=0.01).startswith("contradicted")
    wide = stats.Interval(0.0, -0.02, 0.02, 3, 0.01)  # includes zero, reaches past ±1
    assert stats.verdict(wide, "alike", margin=0.01).startswith("inconclusive")
    assert stats.verdict(wide, "not-worse", margin=0.01).startswith("inconclusive")
    with pytest.raises(ValueError, match="margin"):
        stats.verdict(wide, "alike")


@given(
    mean=st.floats(-0.05, 0.05),
    half=st.floats(1e-5, 0.05),
    margin=st.floats(1e-3, 0.05),
)
def test_equivalence_verdicts_are_consistent(mean: float, half: float, margin: float) -> None:
    """Whatever "alike" supports, "not-worse" supports too; a supported "alike" interval
    lies inside ±margin and a contradicted one lies wholly outside it."""
    iv = stats.Interval(mean, mean - half, mean + half, 4, half)
    alike = stats.verdict(iv, "alike", margin=margin)
    if alike == "supported":
        assert stats.verdict(iv, "not-worse", margin=margin) == "supported"
        assert -margin < iv.low and iv.high < margin
    if alike.startswith("contradicted"):
        assert iv.low >= margin or iv.high <= -margin


def test_t_interval_refuses_what_it_cannot_use():
    for bad in ([], [1.0, math.nan], [[1.0, 2.0]]):
        with pytest.raises(ValueError):
            stats.t_interval(bad)


@pytest.mark.parametrize("n", [3, 4, 6])
def test_detectable_difference_has_the_stated_power(n):
    """Simulated paired t tests at the detectable difference reject about 80% of the time."""
    sd = 0.02
    delta = stats.detectable(sd, n)
    rng = np.random.default_rng(n)
    draws = rng.normal(delta, sd, size=(40_000, n))
    p = sps.ttest_1samp(draws, 0.0, axis=1).pvalue
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.01)


def test_detectable_difference_limits():
    assert stats.detectable(1.0, 1) == math.inf
    assert stats.detectable(math.nan, 5) == math.inf
    assert stats.detectable(0.0, 5) == 0.0
    # Large n: the normal approximation (z_0.975 + z_0.8)·sd/√n.
    z = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) / math.sqrt(2000)
    assert stats.detectable(1.0, 2000) == pytest.approx(z, rel=2e-3)


def test_pooled_sd_weights_each_group_by_its_degrees_of_freedom():
    a, b = [1.0, 2.0, 3.0], [10.0, 14.0]
    sd, df = stats.pooled_sd([a, b, [7.0]])
    ss = np.var(a, ddof=0) * 3 + np.var(b, ddof=0) * 2
    assert df == 3 and sd == pytest.approx(math.sqrt(ss / 3), abs=1e-12)
    assert math.isnan(stats.pooled_sd([[1.0]])[0])
