"""The library API behind ``huberkl noise``: measure label noise three ways, read settings off.

- :func:`from_annotations`: two COCO files of the same images (gold or peer reference);
- :func:`from_iou_agreement`: a reported mean IoU between two annotators;
- :func:`from_residuals`: residuals of a pilot regression fit.

Each returns a plain dict (the ``--format json`` schema); :func:`measure` runs the one a
:class:`huberkl.schema.NoiseSchema` asks for (the ``noise`` config section, whose defaults
these functions share); :func:`write_outputs` writes the figure, the params presets and the
framework fragments beside it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from huberkl.distributions import check_family
from huberkl.errors import InputError
from huberkl.noise import estimate as est
from huberkl.noise import settings as st
from huberkl.noise.fit import check_mode
from huberkl.params import COORDS
from huberkl.schema import NoiseSchema


def _settings(
    scales: dict[str, float], families: dict[str, str], preset: str, pred_noise: Any
) -> dict[str, Any]:
    readings = st.read_off(scales, families, preset, pred_noise)
    kappa = {c: st.efficiency_factor(families[c]) for c in COORDS}
    return {
        "preset": preset,
        "pred_noise": None if pred_noise is None else str(pred_noise),
        "efficient_alpha": {
            c: (None if math.isinf(kappa[c]) else kappa[c] * scales[c]) for c in COORDS
        },
        "paper": [r.to_dict() for r in readings["paper"]],
        "efficient": [r.to_dict() for r in readings["efficient"]],
        "_readings": readings,
    }


def measure(settings: NoiseSchema) -> tuple[dict[str, Any], str]:
    """The measurement ``settings`` asks for (checked when they were made), and the name of
    the params preset it writes unless ``settings.name`` gives one."""
    s = settings
    if s.annotations is not None:
        assert s.reference is not None  # NoiseSchema refuses one without the other
        annotations = Path(s.annotations)
        result = from_annotations(
            annotations,
            Path(s.reference),
            s.reference_kind,
            s.min_iou,
            s.preset,
            s.pred_noise,
            s.resamples,
            s.seed,
        )
        return result, f"noise-{annotations.stem}"
    if s.iou_agreement is not None:
        result = from_iou_agreement(
            s.iou_agreement, s.family, s.reference_kind, s.preset, s.pred_noise
        )
        return result, f"noise-iou-{s.iou_agreement:g}"
    assert s.residuals is not None  # NoiseSchema asks for exactly one source
    residuals = Path(s.residuals)
    result = from_residuals(residuals, s.column, s.resamples, s.seed)
    return result, f"noise-{residuals.stem}"


def from_annotations(
    annotations: str | Path,
    reference: str | Path,
    kind: str = NoiseSchema.reference_kind,
    min_iou: float = NoiseSchema.min_iou,
    preset: str = NoiseSchema.preset,
    pred_noise: Any = None,
    resamples: int = NoiseSchema.resamples,
    seed: int = NoiseSchema.seed,
) -> dict[str, Any]:
    """Match, code, fit (truncation-aware at ``min_iou``) and read the settings off."""
    from huberkl.noise.matching import match_files

    check_mode(kind)
    m = match_files(annotations, reference, min_iou)
    e = est.estimate(m.errors, kind, COORDS, resamples, seed, min_iou=min_iou)
    out = {
        "source": {
            "annotations": str(annotations),
            "reference": str(reference),
            "reference_kind": kind,
            "min_iou": min_iou,
        },
        "mode": kind,
        "matched": m.matched,
        "unmatched": m.unmatched,
        "counts": m.counts,
        "coordinates": {c: v.to_dict() for c, v in e.coords.items()},
        "warnings": list(e.warnings),
        "_errors": m.errors,
    }
    families = {c: v.family for c, v in e.coords.items()}
    out["settings"] = _settings(e.scales(), families, preset, pred_noise)
    return out


def from_iou_agreement(
    q: float,
    family: str = NoiseSchema.family,
    kind: str = "peer",  # two annotators: the reported IoU is between two noisy boxes
    preset: str = NoiseSchema.preset,
    pred_noise: Any = None,
) -> dict[str, Any]:
    """The per-annotation scale whose mean IoU between annotators is ``q``, for ``family``."""
    from huberkl.noise.iou import scale_for_iou

    family = check_family(family)
    s = scale_for_iou(q, family, kind)
    if s == 0:
        raise InputError("--iou-agreement 1 means no noise at all: there is no scale to read")
    coords = {
        c: {"family": family, "scale": s, "ci95": None, "fits": {}, "loc": 0.0} for c in COORDS
    }
    out = {
        "source": {"iou_agreement": q, "family": family, "reference_kind": kind},
        "mode": kind,
        "coordinates": coords,
        "warnings": [],
    }
    out["settings"] = _settings(
        dict.fromkeys(COORDS, s), dict.fromkeys(COORDS, family), preset, pred_noise
    )
    return out


def from_residuals(
    path: str | Path,
    column: str = NoiseSchema.column,
    resamples: int = NoiseSchema.resamples,
    seed: int = NoiseSchema.seed,
) -> dict[str, Any]:
    """Family, scale and efficient α of the residuals in ``column`` of a CSV file."""
    from huberkl.noise.residuals import read_residuals

    r = read_residuals(path, column)
    e = est.estimate(r[:, None], "gold", (column,), resamples, seed)
    c = e.coords[column]
    kappa = st.efficiency_factor(c.family)
    alpha = None if math.isinf(kappa) else kappa * c.scale
    return {
        "source": {"residuals": str(path), "column": column},
        "mode": "gold",
        "n": len(r),
        "coordinates": {column: c.to_dict()},
        "settings": {
            "efficient_alpha": alpha,
            "loss": "l1" if alpha == 0 else ("l2" if alpha is None else "huber"),
            "note": {
                "laplace": "Laplace noise: the median (L1 loss) is the efficient fit",
                "gaussian": "Gaussian noise: least squares (α -> ∞) is the efficient fit",
            }.get(c.family, f"Huber loss with transition α = {kappa:.4g}·scale"),
        },
        "warnings": list(e.warnings),
        "_errors": r[:, None],
    }


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of a result (private arrays and objects removed)."""
    out = {k: v for k, v in result.items() if not k.startswith("_")}
    if isinstance(out.get("settings"), dict):
        out["settings"] = {k: v for k, v in out["settings"].items() if not k.startswith("_")}
    return out


def preset_name(text: str) -> str:
    """A safe preset file name from ``text``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower()
    return name or "noise"


def write_outputs(
    result: dict[str, Any], out_dir: Path, name: str, figure: bool = True
) -> dict[str, str]:
    """Write result.json, the figure, params presets and fragments; returns what was written."""
    import json

    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    pub = public(result)
    (out_dir / "result.json").write_text(
        json.dumps(pub, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    written["result"] = str(out_dir / "result.json")
    if "_errors" in result:
        cols = list(result["coordinates"])
        np.savetxt(
            out_dir / "errors.csv",
            result["_errors"],
            delimiter=",",
            header=",".join(cols),
            comments="",
            encoding="utf-8",
        )
        written["errors"] = str(out_dir / "errors.csv")
        if figure:
            from huberkl.noise.figure import plot_errors

            written["figure"] = str(plot_errors(result, out_dir / "errors.png"))
    readings = result.get("settings", {}).get("_readings")
    if readings:
        from huberkl.interpret import fragments

        frag_lines = []
        for reading, suffix in (("paper", ""), ("efficient", "-efficient")):
            mapping = st.preset_mapping(
                readings[reading], f"{name}{suffix}", f"huberkl noise ({reading} reading)"
            )
            if mapping is None:
                continue
            path = out_dir / "params" / f"{name}{suffix}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            header = (
                f"# Box-loss settings read off measured label noise ({reading} reading).\n"
                f"# Use: huberkl detect hydra.searchpath=[file://{out_dir.resolve()}] "
                f"params={name}{suffix}\n"
                "# or copy this file into conf/params/.\n"
            )
            path.write_text(
                header + yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True),
                encoding="utf-8",
            )
            written[f"preset_{reading}"] = str(path)
            for r in readings[reading]:
                head = "rpn" if r.stage == "proposal" else "roi"
                for fw, text in fragments(r.params, st.FORM, head).items():
                    lang = "yaml" if fw == "detectron2" else "python"
                    frag_lines.append(
                        f"## {reading} reading · {r.stage} ({head}) · {fw}\n\n```{lang}\n{text}```\n"
                    )
        if frag_lines:
            (out_dir / "fragments.md").write_text("\n".join(frag_lines), encoding="utf-8")
            written["fragments"] = str(out_dir / "fragments.md")
    return written
