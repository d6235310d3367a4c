"""Box-loss settings (α, λ, σ) <-> noise scales, exactly: parsing, the mapping, notation.

The mapping is the paper's reading of the box loss as a KL divergence between Laplace
distributions (Eq. 21, 26, 32); :mod:`huberkl.interpret` states it in full. Every scale is
a :class:`fractions.Fraction` in anchor units (w_a for x and w, h_a for y and h), so
Table 2 of the paper comes out exactly. Torch- and rich-free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from huberkl.errors import InputError
from huberkl.params import COORDS, FORMS, StageParams, parse_number

UNIT = {"x": "wa", "y": "ha", "w": "wa", "h": "ha"}

# --------------------------------------------------------------------------- parsing


_SCALE = re.compile(r"^(?P<num>[0-9.eE+-]*)\s*\*?\s*(?P<unit>[wh]_?a)\s*(?:/\s*(?P<den>\S+))?$")


def parse_scale(value: Any, name: str = "noise scale") -> Fraction:
    """A scale in anchor units: ``1/20``, ``0.05``, or the paper's ``wa/20``, ``2wa/5``."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        m = _SCALE.match(text)
        if m:
            num = parse_number(m["num"] or "1", name)
            den = parse_number(m["den"], name) if m["den"] else Fraction(1)
            if den == 0:
                raise InputError(f"{name} must have a non-zero denominator, got {value!r}")
            return num / den
        return parse_number(text, name)
    return parse_number(value, name)


def parse_coords(
    value: Any, name: str, default: Fraction | None = None, scale: bool = False
) -> dict[str, Fraction | None]:
    """Per-coordinate values from ``1/9`` (all four), ``a,b,c,d`` (x, y, w, h) or ``x=a,w=b``.

    Coordinates not given get ``default``; an unknown coordinate is an InputError.
    """
    parse = parse_scale if scale else parse_number
    if isinstance(value, Mapping):
        items = {str(k).strip(): v for k, v in value.items() if v is not None}
    elif isinstance(value, str) and "=" in value:
        items = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            key, sep, val = part.partition("=")
            if not sep or not val.strip():
                raise InputError(f"{name} must look like x=1/10,w=1/5, got {value!r}")
            items[key.strip()] = val.strip()
    elif isinstance(value, str) and "," in value:
        parts = [p.strip() for p in value.split(",")]
        if len(parts) != len(COORDS):
            raise InputError(f"{name} needs 1 or 4 comma-separated values (x,y,w,h), got {value!r}")
        items = dict(zip(COORDS, parts, strict=True))
    else:
        v = parse(value, name)
        return {c: v for c in COORDS}
    bad = [k for k in items if k not in COORDS]
    if bad:
        raise InputError(f"unknown coordinate {bad[0]!r} in {name}; allowed: x, y, w, h")
    sep = " " if " " in name else "_"  # sigma_x, but "label noise x"
    return {c: parse(items[c], f"{name}{sep}{c}") if c in items else default for c in COORDS}


# --------------------------------------------------------------------------- the mapping


@dataclass(frozen=True)
class NoiseScales:
    """Label- and prediction-noise scales per coordinate, in anchor units (w_a or h_a)."""

    label: dict[str, Fraction]
    prediction: dict[str, Fraction]


def check_form(form: str) -> str:
    if form not in FORMS:
        raise InputError(f"form must be one of {'|'.join(FORMS)}, got {form!r}")
    return form


def noise_scales(stage: StageParams, form: str = "smooth-l1") -> NoiseScales:
    """Eq. 21 / 26 / 32: the scales that ``stage``'s box loss, read in ``form``, implies."""
    check_form(form)
    alpha = stage.effective_alpha
    label: dict[str, Fraction] = {}
    pred: dict[str, Fraction] = {}
    for c in COORDS:
        sigma = stage.sigma[c]
        if stage.loss == "l1":  # α -> 0: λ·|t − t̃*| = D_{0, σ·w_a/λ}, whatever the form
            label[c], pred[c] = Fraction(0), sigma / stage.lam
            continue
        label[c] = alpha * sigma / (2 if stage.loss == "kl" else 1)
        pred[c] = sigma / stage.lam if form == "smooth-l1" else sigma / (alpha * stage.lam)
    return NoiseScales(label, pred)


def settings_for(
    label: Any,
    prediction: Any,
    alpha: Any = None,
    form: str = "smooth-l1",
    loss: str = "huber",
) -> StageParams:
    """The inverse of :func:`noise_scales`: settings whose reading is exactly the given scales.

    ``label``/``prediction`` are one value or one per coordinate (anchor units). α is free
    (only the product with λ is fixed by the ratio label/prediction), so it is 1 unless given,
    as in the paper's experiments. λ is shared by the four coordinates, so the ratio
    label/prediction must be the same for all of them. Label noise 0 means an L1 loss.
    """
    check_form(form)
    if loss not in ("huber", "kl", "l1"):
        raise InputError(f"loss must be one of huber|kl|l1, got {loss!r}")
    lab = _full(_coords_or_none(label, "label noise"), "label noise")
    pred = _full(_coords_or_none(prediction, "prediction noise"), "prediction noise")
    for c in COORDS:
        if lab[c] < 0:
            raise InputError(f"label noise {c} must be >= 0 (0 means an L1 loss), got {lab[c]}")
        if pred[c] <= 0:
            raise InputError(f"prediction noise {c} must be > 0, got {pred[c]}")
    a = None if alpha is None else parse_number(alpha, "alpha")
    zero = [c for c in COORDS if lab[c] == 0]
    if zero or loss == "l1":
        if len(zero) != len(COORDS):
            given = ", ".join(f"{c}={lab[c]}" for c in COORDS)
            raise InputError(
                f"label noise must be 0 for every coordinate (an L1 loss) or for none, got {given}"
            )
        if a not in (None, 0):
            raise InputError(f"label noise 0 is an L1 loss (alpha 0), got alpha={a}")
        return StageParams(loss="l1", alpha=Fraction(0), lam=Fraction(1), sigma=dict(pred))
    a = Fraction(1) if a is None else a
    if a <= 0:
        raise InputError(f"alpha must be > 0 when the label noise is > 0, got {a}")
    sigma = {c: lab[c] * (2 if loss == "kl" else 1) / a for c in COORDS}
    lams = {c: sigma[c] / pred[c] / (1 if form == "smooth-l1" else a) for c in COORDS}
    if len(set(lams.values())) != 1:
        ratios = ", ".join(f"{c} {lab[c] / pred[c]}" for c in COORDS)
        raise InputError(
            "label/prediction noise ratio must be the same for every coordinate "
            f"(λ is shared), got {ratios}"
        )
    return StageParams(loss=loss, alpha=a, lam=lams["x"], sigma=sigma)


def _coords_or_none(value: Any, name: str) -> dict[str, Fraction | None]:
    if value is None:
        return dict.fromkeys(COORDS)
    return parse_coords(value, name, scale=True)


def _full(values: dict[str, Fraction | None], name: str) -> dict[str, Fraction]:
    missing = [c for c in COORDS if values[c] is None]
    if missing:
        raise InputError(
            f"{name} for {', '.join(missing)} not given; give one value or one per coordinate"
        )
    return values  # type: ignore[return-value]


# --------------------------------------------------------------------------- notation


def scale_text(value: Fraction, coord: str) -> str:
    """The paper's notation: ``wa/9``, ``2wa/5``, ``ha``, ``0`` (x, w in w_a; y, h in h_a)."""
    if coord not in UNIT:
        raise InputError(f"unknown coordinate {coord!r}; allowed: x, y, w, h")
    if value == 0:
        return "0"
    unit = UNIT[coord]
    num = unit if value.numerator == 1 else f"{value.numerator}{unit}"
    return num if value.denominator == 1 else f"{num}/{value.denominator}"


def decimal_text(value: Fraction) -> str:
    return f"{float(value):.4g}"
