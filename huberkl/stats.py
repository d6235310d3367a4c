"""Paired comparisons over seeds: the statistics behind every detection verdict.

Seed k of every setting shares its initialisation and data order (``seed=k``), so two
settings are compared through their per-seed differences, which cancels the part of the
run-to-run spread that both settings share. The interval is Student's t over those
differences (a bootstrap over 3-5 seeds has too few distinct resamples to mean anything).

A verdict follows from the interval alone. For a claim that one setting is better it says
"supported" only when the interval excludes zero in the direction the paper claims,
"contradicted" when it excludes zero the other way, and otherwise "no detectable
difference (±X points)", X being the interval's half-width. A claim that two settings are
alike (or that one is at most slightly worse) is judged against a stated margin instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # two-sided confidence of every interval in the report
POWER = 0.8  # power of the minimal detectable difference


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with a two-sided t interval ``[low, high]`` (``half`` = width/2)."""

    mean: float
    low: float
    high: float
    n: int
    sd: float

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The t interval of the mean; with one value the interval is unbounded (no spread known)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"t_interval needs one or more finite values, got {values!r}")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, -math.inf, math.inf, 1, math.nan)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half, int(x.size), sd)


def differences(a: Mapping[int, float], b: Mapping[int, float]) -> list[float]:
    """``a[k] - b[k]`` over the seeds ``k`` both have, in seed order."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("no seed in common: the settings cannot be paired")
    return [a[k] - b[k] for k in seeds]


def paired(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Interval:
    """Interval of the mean of ``a[k] - b[k]`` over the seeds ``k`` both have."""
    return t_interval(differences(a, b), level)


CLAIMS = ("greater", "alike", "not-worse")


def verdict(
    diff: Interval, claim: str = "greater", scale: float = 100.0, margin: float = 0.0
) -> str:
    """The verdict on a claim about ``diff`` = (claimed better) − (other).

    ``claim``: ``"greater"`` (the first setting is better); ``"alike"`` (equivalence: the
    settings differ by less than ``margin``, as in Table 6's "nearly identical"); or
    ``"not-worse"`` (non-inferiority: the first loses less than ``margin``, as in Table 5's
    "only a very slight degradation"). Equivalence is judged as two one-sided tests are, by
    where the interval lies against ``±margin``, never against zero: a tiny but certain
    difference inside the margin supports "alike". ``scale`` turns metric units into the
    printed points (AP in [0, 1] -> %).
    """
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {', '.join(CLAIMS)}, got {claim!r}")
    if claim != "greater" and not margin > 0:
        raise ValueError(f"a {claim!r} claim needs a margin > 0, got {margin!r}")
    if diff.n < 2:
        return "cannot test (one seed: no interval)"
    width = f"±{scale * diff.half:.1f} points"
    m = f"{scale * margin:.1f}"
    if claim == "alike":
        if -margin < diff.low and diff.high < margin:
            return "supported"
        if diff.low >= margin or diff.high <= -margin:
            return f"contradicted (they differ by more than {m} points: {scale * diff.mean:+.1f})"
        return f"inconclusive (interval reaches past the ±{m}-point margin; {width})"
    if claim == "not-worse":
        if diff.low > -margin:
            return "supported"
        if diff.high <= -margin:
            return f"contradicted (it loses more than {m} points: {scale * diff.mean:+.1f})"
        return f"inconclusive (interval reaches past the −{m}-point margin; {width})"
    if not diff.excludes_zero():
        return f"no detectable difference ({width})"
    return "supported" if diff.low > 0 else "contradicted"


def detectable(sd: float, n: int, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest true mean difference that a two-sided paired t test over ``n`` seeds
    finds with probability ``power``, for a per-seed difference SD of ``sd``.

    Exact: the non-centrality ``δ√n/sd`` at which the non-central t's mass beyond the
    critical values equals ``power`` (scipy.stats.nct), solved for ``δ``.
    """
    if n < 2 or not math.isfinite(sd):
        return math.inf
    if sd == 0:
        return 0.0
    df = n - 1
    crit = float(stats.t.ppf(0.5 + level / 2, df))

    def short(ncp: float) -> float:
        # The far tail is negligible where scipy's nct returns NaN for it (large ncp).
        far = float(np.nan_to_num(stats.nct.cdf(-crit, df, ncp), nan=0.0))
        return float(stats.nct.sf(crit, df, ncp)) + far - power

    from scipy.optimize import brentq

    hi = 4.0
    while short(hi) < 0:  # power grows with the non-centrality: bracket the root
        hi *= 2
    ncp = brentq(short, 0.0, hi, xtol=1e-10)
    return ncp * sd / math.sqrt(n)


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The pooled SD of several samples (each about its own mean) and its degrees of freedom."""
    ss, df = 0.0, 0
    for g in groups:
        x = np.asarray(g, dtype=np.float64)
        if x.size >= 2:
            ss += float(((x - x.mean()) ** 2).sum())
            df += x.size - 1
    return (math.sqrt(ss / df), df) if df else (math.nan, 0)
