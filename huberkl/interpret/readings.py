"""A stage's settings with the noise scales they imply: what every renderer shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huberkl.interpret.scales import NoiseScales, check_form, noise_scales, scale_text
from huberkl.params import COORDS, Preset, StageParams

STAGE_HEAD = {"proposal": "rpn", "detection": "roi"}

# --------------------------------------------------------------------------- readings


@dataclass(frozen=True)
class Reading:
    """One stage's settings and their interpretation."""

    stage: str
    params: StageParams
    form: str
    scales: NoiseScales
    preset: str | None = None
    title: str = ""
    one_stage: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON schema of ``huberkl interpret --format json`` (floats in anchor units)."""
        p, s = self.params, self.scales
        return {
            "stage": self.stage,
            "lambda": float(p.lam),
            "alpha": float(p.effective_alpha),
            "sigma": {c: float(p.sigma[c]) for c in COORDS},
            "label_noise": {c: float(s.label[c]) for c in COORDS},
            "prediction_noise": {c: float(s.prediction[c]) for c in COORDS},
            "label_noise_text": {c: scale_text(s.label[c], c) for c in COORDS},
            "prediction_noise_text": {c: scale_text(s.prediction[c], c) for c in COORDS},
            "loss": p.loss,
            "form": self.form,
            "normaliser": p.normaliser,
            "exact": {
                "lambda": str(p.lam),
                "alpha": str(p.effective_alpha),
                "sigma": {c: str(p.sigma[c]) for c in COORDS},
            },
        }


def read_stage(
    params: StageParams, form: str = "smooth-l1", stage: str = "custom", **kw: Any
) -> Reading:
    return Reading(stage, params, form, noise_scales(params, form), **kw)


def read_preset(preset: Preset, form: str | None = None) -> list[Reading]:
    """Every stage of ``preset``, read in its own form (or ``form`` when given)."""
    f = check_form(form or preset.form)
    one = len(preset.stages) == 1
    return [
        read_stage(p, f, name, preset=preset.name, title=preset.title, one_stage=one)
        for name, p in preset.stages.items()
    ]


def head_of(reading: Reading) -> str:
    """Which detector head a stage configures: RPN, ROI box head or RetinaNet's head."""
    return "retinanet" if reading.one_stage else STAGE_HEAD.get(reading.stage, "roi")


def stage_label(r: Reading) -> str:
    return "Head" if r.one_stage else r.stage.capitalize()
