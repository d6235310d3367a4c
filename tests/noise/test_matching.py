"""Box matching, error coding, matching intervals, IoU inversion and the settings read-off."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou

from huberkl.detect.data.synth import perturb_targets
from huberkl.errors import InputError
from huberkl.noise import iou, matching, settings, truncation


def _xyxy(b: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1))


def _random_boxes(n: int, rng: np.random.Generator) -> np.ndarray:
    wh = rng.uniform(5, 80, (n, 2))
    return np.concatenate([rng.uniform(0, 300, (n, 2)), wh], 1)


def test_encode_is_torchvisions_box_coding():
    rng = np.random.default_rng(0)
    a, r = _random_boxes(50, rng), _random_boxes(50, rng)
    ref = BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(_xyxy(a), _xyxy(r)).numpy()
    np.testing.assert_allclose(matching.encode(a, r), ref, rtol=1e-12, atol=1e-12)


def test_pair_iou_is_box_iou_diagonal():
    rng = np.random.default_rng(1)
    a, r = _random_boxes(40, rng), _random_boxes(40, rng)
    r[:20] = a[:20] + rng.normal(0, 3, (20, 4)) * [1, 1, 0, 0]
    ref = torch.diagonal(box_iou(_xyxy(a), _xyxy(r))).numpy()
    np.testing.assert_allclose(matching.pair_iou(a, r), ref, rtol=1e-12)


def _coco(boxes, images=(1, 2), cats=None, crowd=None):
    anns = []
    for i, b in enumerate(boxes):
        anns.append({
            "id": i + 1, "image_id": b[0], "category_id": b[1], "bbox": list(b[2]),
            "iscrowd": int(bool(crowd and i in crowd)),
        })  # fmt: skip
    return {"images": [{"id": i} for i in images], "annotations": anns}


def test_hungarian_matching_per_image_and_category():
    ref = _coco([
        (1, 1, [0, 0, 10, 10]), (1, 1, [8, 0, 10, 10]), (1, 2, [0, 0, 10, 10]),
        (2, 1, [50, 50, 20, 20]), (2, 1, [100, 100, 5, 5]),
    ])  # fmt: skip
    ann = _coco(
        [
            (1, 1, [8.5, 0, 10, 10]),  # listed in the other order: must still pair by IoU
            (1, 1, [0.5, 0, 10, 10]),
            (1, 3, [0, 0, 10, 10]),  # a category the reference lacks: unmatched
            (2, 1, [51, 50, 20, 20]),
            (2, 1, [300, 300, 5, 5]),  # overlaps nothing: unmatched
            (2, 1, [50, 50, 20, 20]),  # crowd: skipped
        ],
        crowd={5},
    )
    m = matching.match(matching.boxes_from_coco(ann, "a"), matching.boxes_from_coco(ref, "r"))
    pairs = {tuple(p) for p in m.ann_ids.tolist()}
    assert pairs == {(1, 2), (2, 1), (4, 4)}
    assert m.counts["unmatched_annotation"] == 2 and m.counts["unmatched_reference"] == 2
    assert m.counts["crowd_skipped"] == 1 and m.unmatched == 4
    np.testing.assert_allclose(sorted(m.errors[:, 0]), [0.05, 0.05, 0.05])


def test_assignment_maximises_total_iou():
    rng = np.random.default_rng(7)
    for _ in range(20):
        ref = _random_boxes(3, rng) * [0.2, 0.2, 1, 1]  # crowded: several candidates each
        ann = ref + rng.normal(0, 4, (3, 4)) * [1, 1, 0, 0]
        one = np.ones(3, dtype=np.int64)
        m = matching.match(
            matching.Boxes("a", {1}, np.arange(3), one, one, ann, 0),
            matching.Boxes("r", {1}, np.arange(3), one, one, ref, 0),
            min_iou=1e-9,
        )
        ious = torch.tensor(box_iou(_xyxy(ann), _xyxy(ref)).numpy())
        best = max(
            sum(float(ious[i, p[i]]) for i in range(3)) for p in itertools.permutations(range(3))
        )
        assert m.iou.sum() == pytest.approx(best, rel=1e-12) or m.matched < 3


@pytest.mark.parametrize(
    ("ann", "ref", "kw", "needle"),
    [
        (_coco([(1, 1, [0, 0, 5, 5])], images=(1,)), _coco([(3, 1, [0, 0, 5, 5])], images=(3,)), {}, "no image id in common"),
        (_coco([(1, 1, [0, 0, 5, 5])]), _coco([(1, 1, [50, 50, 5, 5])]), {}, "no boxes"),
        (_coco([(1, 1, [0, 0, 0, 5])]), _coco([(1, 1, [0, 0, 5, 5])]), {}, "zero-size"),
        (_coco([(1, 1, [0, 0, 5, 5])]), _coco([(1, 1, [0, 0, 5, 5])]), {"min_iou": 0.0}, r"\(0, 1\]"),
        (_coco([(1, 1, [0, 0, 5, 5])]), _coco([(1, 1, [0, 0, 5, 5])]), {"min_iou": 1.5}, r"\(0, 1\]"),
    ],
)  # fmt: skip
def test_bad_input_is_one_input_error(ann, ref, kw, needle):
    with pytest.raises(InputError, match=needle):
        matching.match(matching.boxes_from_coco(ann, "a"), matching.boxes_from_coco(ref, "r"), **kw)


def _bisect(e, q):
    """Reference intervals by bisection on the IoU (independent of the closed forms)."""
    lo, hi = np.empty_like(e), np.empty_like(e)
    for c in range(4):
        for side, out in ((lo, -1.0), (hi, 1.0)):
            far = np.where(c < 2, out * (np.exp(e[:, 2 + c % 2]) + 1) / 2, e[:, c] + out * 40)
            a, b = far.copy(), e[:, c].copy()
            t = e.copy()
            for _ in range(60):
                mid = (a + b) / 2
                t[:, c] = mid
                ok = truncation.iou_of_errors(t) >= q
                b, a = np.where(ok, mid, b), np.where(ok, a, mid)
            side[:, c] = b
    return lo, hi


@pytest.mark.parametrize("q", [0.1, 0.5, 0.8])
def test_matching_intervals_closed_form_equals_bisection(q):
    rng = np.random.default_rng(3)
    e = rng.laplace(0, 0.15, (4000, 4))
    e = e[truncation.iou_of_errors(e) >= q]
    lo, hi = truncation.intervals(e, q)
    rlo, rhi = _bisect(e, q)
    np.testing.assert_allclose(lo, rlo, atol=1e-10)
    np.testing.assert_allclose(hi, rhi, atol=1e-10)
    assert (lo <= e + 1e-12).all() and (e <= hi + 1e-12).all()


def test_iou_of_errors_is_the_pixel_iou():
    rng = np.random.default_rng(4)
    ref = _random_boxes(100, rng)
    noisy, _ = perturb_targets(ref, "laplace", (0.1, 0.1, 0.2, 0.2), rng)
    np.testing.assert_allclose(
        truncation.iou_of_errors(matching.encode(noisy, ref)),
        matching.pair_iou(noisy, ref),
        rtol=1e-10,
    )


@pytest.mark.parametrize("family", ["laplace", "cauchy"])
def test_iou_inversion_agrees_with_an_independent_simulation(family):
    for q in (0.6, 0.85):
        s = iou.scale_for_iou(q, family)
        sim = iou.simulate_iou(family, s, "peer", draws=200_000, seed=99)
        se = sim.std() / math.sqrt(len(sim))
        assert abs(sim.mean() - q) < 4 * se + 2e-3


def test_iou_inversion_bad_values():
    for q in (0.0, -0.1, 1.2, float("nan")):
        with pytest.raises(InputError, match=r"\(0, 1\]"):
            iou.scale_for_iou(q)
    assert iou.scale_for_iou(1.0) == 0.0


def test_paper_reading_inverts_to_the_measured_noise():
    from huberkl.interpret import noise_scales
    from huberkl.params import load_preset

    scales = {"x": 0.04, "y": 0.05, "w": 0.08, "h": 0.09}
    r = settings.read_off(scales, dict.fromkeys("xywh", "logistic"))
    exp_c = load_preset("exp-c")
    for reading in r["paper"]:
        ns = noise_scales(reading.params)
        assert {c: float(v) for c, v in ns.label.items()} == pytest.approx(scales)
        ratio = noise_scales(exp_c.stage(reading.stage), exp_c.form)
        assert ns.label["x"] / ns.prediction["x"] == ratio.label["x"] / ratio.prediction["x"]


def test_efficient_reading_follows_the_toy_theory():
    from huberkl.interpret import noise_scales
    from huberkl.toy.theory import optimal_alpha

    scales = dict.fromkeys("xywh", 0.05)
    lap = settings.read_off(scales, dict.fromkeys("xywh", "laplace"))["efficient"]
    assert all(r.params.loss == "l1" for r in lap)
    logi = settings.read_off(scales, dict.fromkeys("xywh", "logistic"))["efficient"]
    label = noise_scales(logi[0].params).label["x"]
    # settings carry 3 significant figures of the measured values
    assert float(label) == pytest.approx(optimal_alpha("logistic", 0.05), rel=5e-3)
    gauss = settings.read_off(
        scales, {"x": "gaussian", "y": "laplace", "w": "laplace", "h": "laplace"}
    )
    assert all(r.params is None and "least squares" in r.note for r in gauss["efficient"])
    assert settings.to_fraction(0.0123456) == Fraction(123, 10000)
