"""Recovery of known noise (the README's validation table, in small and in full)."""

from __future__ import annotations

import numpy as np
import pytest

from huberkl.distributions import FAMILIES
from huberkl.noise import validate


@pytest.mark.parametrize("family", FAMILIES)
def test_gold_recovers_scale_and_family_in_one_draw(family):
    r = validate.one_draw("gold", family, 0.05, 2000, 0.1, np.random.default_rng(1))
    assert max(abs(e) for e in r["rel_err"]) <= 0.10
    assert all(r["chosen_ok"])


@pytest.mark.parametrize("family", FAMILIES)
def test_peer_recovers_the_per_annotation_scale_in_one_draw(family):
    r = validate.one_draw("peer", family, 0.05, 2000, 0.1, np.random.default_rng(2))
    assert max(abs(e) for e in r["rel_err_true_family"]) <= 0.15


def test_residual_path_recovers_the_toy_noise():
    from huberkl.noise.estimate import estimate_coordinate

    r = validate.toy_residuals("logistic", 1.0, seed=0)
    c = estimate_coordinate(r, "gold", resamples=0)
    assert c.family == "logistic" and c.scale == pytest.approx(1.0, rel=0.05)


@pytest.mark.slow
def test_gold_validation_table():
    rows = validate.recovery_table(modes=("gold",), draws=10, seed=7)
    for r in rows:
        assert r["within_tol_true_family"] >= 0.95, r
        assert r["family_rate"] >= 0.9, r
    assert np.mean([r["family_rate"] for r in rows]) >= 0.95


@pytest.mark.slow
def test_peer_validation_table():
    rows = validate.recovery_table(modes=("peer",), draws=10, seed=7)
    for r in rows:
        assert r["within_tol_true_family"] >= 0.8, r
        assert r["median_abs_rel_err"] <= 0.15 or r["scale"] >= 0.2, r


@pytest.mark.slow
def test_iou_and_residual_tables():
    for r in validate.iou_table(draws=200_000):
        assert r["abs_diff"] <= 4 * r["mc_se"] + 2e-3, r
    for r in validate.residual_table(seeds=2):
        assert r["chosen"] == r["family"] and abs(r["rel_err"]) <= 0.05, r
