"""Box-loss settings read off measured label noise, in two readings side by side.

- The paper's reading (Sec. 6, docs/NOISE.md): label noise = α·σ·w_a, so the fitted scale
  is the label noise that ``huberkl.interpret.settings_for`` inverts.
- The efficiency reading: the Huber transition that minimises the M-estimator's asymptotic
  variance for the fitted family (``huberkl.toy.theory.optimal_alpha``), α* = κ·scale:
  κ = 0 for Laplace (an L1 loss), 2.10 for Logistic, 0.395 for Cauchy, ∞ for Gaussian
  (least squares, which no box-loss type here expresses). It is the paper's reading with
  κ·scale in place of the scale.

The prediction noise of each stage is the preset's ratio label/prediction (α·λ in the
smooth-L1 form; Experiment C by default) applied to the measured label noise, or given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from huberkl.errors import InputError
from huberkl.params import COORDS, Preset, StageParams, load_preset
from huberkl.schema import NoiseSchema

DEFAULT_PRESET = NoiseSchema.preset  # `huberkl noise --preset` (conf/noise/default.yaml)
FORM = "smooth-l1"  # the implementation form that conf/params presets and detect use


def efficiency_factor(family: str) -> float:
    """κ with α* = κ·scale (toy theory): 0 Laplace, ∞ Gaussian, else the numerical optimum."""
    if family == "gaussian":
        return math.inf
    from huberkl.toy.theory import optimal_alpha

    return optimal_alpha(family, 1.0)


def to_fraction(x: float, digits: int = 3) -> Fraction:
    """A measured value as an exact fraction of its ``digits`` significant figures."""
    return Fraction(f"{x:.{digits}g}")


@dataclass(frozen=True)
class StageReading:
    """One stage in one reading: its settings, or why there are none."""

    stage: str
    reading: str
    params: StageParams | None
    label: dict[str, float]
    prediction: dict[str, float]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        from huberkl.interpret import read_stage

        out: dict[str, Any] = {
            "stage": self.stage,
            "reading": self.reading,
            "label_noise": self.label,
            "prediction_noise": self.prediction,
            "note": self.note,
            "settings": None,
        }
        if self.params is not None:
            out["settings"] = read_stage(self.params, FORM, self.stage).to_dict()
        return out


def _ratio(preset: Preset, stage: str) -> Fraction:
    from huberkl.interpret import noise_scales

    sp = preset.stage(stage)
    scales = noise_scales(sp, preset.form)
    ratios = {scales.label[c] / scales.prediction[c] for c in COORDS}
    if len(ratios) != 1 or 0 in ratios:
        raise InputError(
            f"preset {preset.name!r} stage {stage} has no single positive label/prediction "
            "ratio to carry over; pick a Huber preset such as exp-c"
        )
    return ratios.pop()


def _stage(
    stage: str, reading: str, label: dict[str, Fraction], pred: dict[str, Fraction]
) -> StageReading:
    from huberkl.interpret import settings_for

    lab_f = {c: float(v) for c, v in label.items()}
    pred_f = {c: float(v) for c, v in pred.items()}
    try:
        params = settings_for(label, pred, form=FORM)
    except InputError as exc:
        return StageReading(stage, reading, None, lab_f, pred_f, str(exc))
    return StageReading(stage, reading, params, lab_f, pred_f)


def read_off(
    scales: dict[str, float],
    families: dict[str, str],
    preset: str = DEFAULT_PRESET,
    pred_noise: Any = None,
) -> dict[str, list[StageReading]]:
    """Both readings for every stage of ``preset``: ``{"paper": [...], "efficient": [...]}``.

    ``scales``: measured label-noise scale per coordinate (reference-box units, which are
    anchor units for an anchor that matches the box); ``pred_noise``: one value or
    x,y,w,h (anchor units) instead of the preset's ratio.
    """
    from huberkl.interpret import parse_coords

    p = load_preset(preset)
    label = {c: to_fraction(scales[c]) for c in COORDS}
    kappa = {c: efficiency_factor(families[c]) for c in COORDS}
    given = None if pred_noise is None else parse_coords(pred_noise, "prediction noise", scale=True)
    out: dict[str, list[StageReading]] = {"paper": [], "efficient": []}
    for stage in p.stages:
        r = None if given is not None else _ratio(p, stage)
        pred = {c: given[c] if r is None else label[c] / r for c in COORDS}
        out["paper"].append(_stage(stage, "paper", label, pred))
        if any(math.isinf(k) for k in kappa.values()):
            gauss = [c for c in COORDS if math.isinf(kappa[c])]
            note = (
                f"Gaussian noise on {', '.join(gauss)}: the efficient fit is least squares "
                "(α -> ∞), which no box-loss type expresses; use a large α"
            )
            out["efficient"].append(
                StageReading(
                    stage, "efficient", None, {}, {c: float(pred[c]) for c in COORDS}, note
                )
            )
            continue
        eff = {c: to_fraction(kappa[c] * scales[c]) for c in COORDS}
        # Keep the preset's label/prediction ratio for the label noise this loss reads
        # (α and λ are shared by the coordinates); an L1 loss keeps the paper's prediction.
        eff_pred = pred if (r is None or 0 in eff.values()) else {c: eff[c] / r for c in COORDS}
        out["efficient"].append(_stage(stage, "efficient", eff, eff_pred))
    return out


def preset_mapping(readings: list[StageReading], name: str, source: str) -> dict[str, Any] | None:
    """A ``conf/params`` preset from one reading's stages (None when a stage has no settings)."""
    if any(r.params is None for r in readings):
        return None
    preset = Preset(
        name=name,
        stages={r.stage: r.params for r in readings},  # type: ignore[misc]
        form=FORM,
        title=name,
        source=source,
    )
    return preset.to_mapping()
