"""Box-loss settings (α, λ, σ) <-> the noise scales they imply, exactly (Section 6).

Reading the box loss as a KL divergence between Laplace distributions (Eq. 21, 26, 32):

- smooth-l1 form ``(λ/α)·H_α(t − t̃*)`` (the implementation's, smooth L1 with beta = α and
  weight λ) with targets divided by σ: ``≈ D_{α·σ·w_a, σ·w_a/λ}(x̃ − x*)``, so the label-noise
  scale is ``α·σ·w_a`` and the prediction-noise scale ``σ·w_a/λ``;
- huber form ``λ·H_α(t − t̃*)`` (the publication's): ``λ·H_α(γx) ≈ D_{α/γ, 1/(αγλ)}(x)``
  with ``γ = 1/(σ·w_a)`` (Sec. 4.3), so label ``α·σ·w_a`` and prediction ``σ·w_a/(αλ)``;
- an L1 loss (beta = 0) is the α -> 0 limit: label 0, prediction ``σ·w_a/λ`` in either form;
- a ``kl`` loss trains ``D_{α/2,1/α}`` in place of ``H_α`` (Appendix E), whose reading is
  exact rather than approximate: label ``α·σ·w_a/2``, prediction as for the Huber loss.

Widths and heights read the same through ``log w ≈ w/w_a − 1`` (Eq. 30-32); y and h are in
units of the anchor height h_a. Every scale is a :class:`fractions.Fraction` in anchor
units, so Table 2 of the paper comes out exactly. This module is torch-free (and
imports rich only to build tables) so that ``huberkl interpret`` starts instantly.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from huberkl.errors import InputError
from huberkl.params import COORDS, FORMS, PAPER_PRESETS, Preset, StageParams, parse_number

if TYPE_CHECKING:  # rich is imported lazily by the table builders
    from rich.table import Table

HEADS = ("rpn", "roi", "retinanet")
FRAMEWORKS = ("torchvision", "detectron2", "mmdetection")
FORMATS = ("table", "json", "csv", "markdown")
UNIT = {"x": "wa", "y": "ha", "w": "wa", "h": "ha"}
STAGE_HEAD = {"proposal": "rpn", "detection": "roi"}


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


def _check_form(form: str) -> str:
    if form not in FORMS:
        raise InputError(f"form must be one of {'|'.join(FORMS)}, got {form!r}")
    return form


def noise_scales(stage: StageParams, form: str = "smooth-l1") -> NoiseScales:
    """Eq. 21 / 26 / 32: the scales that ``stage``'s box loss, read in ``form``, implies."""
    _check_form(form)
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
    _check_form(form)
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


def _dec(value: Fraction) -> str:
    return f"{float(value):.4g}"


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
    f = _check_form(form or preset.form)
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


# --------------------------------------------------------------------------- framework fragments


def framework_settings(params: StageParams, form: str = "smooth-l1") -> dict[str, Any]:
    """What a framework's smooth L1 needs: beta = α, weight (λ, or λ·α for λ·H_α), 1/σ, σ."""
    _check_form(form)
    weight = (
        params.lam if (form == "smooth-l1" or params.loss == "l1") else params.lam * params.alpha
    )
    return {
        "loss": params.loss,
        "beta": params.effective_alpha,
        "weight": weight,
        "weight_note": (
            "λ·α, since λ·H_α = λ·α·smooth_l1(beta=α)"
            if form == "huber" and params.loss != "l1"
            else "λ"
        ),
        "coder_weights": tuple(1 / params.sigma[c] for c in COORDS),
        "stds": tuple(params.sigma[c] for c in COORDS),
    }


def _py(v: Fraction) -> str:
    """A Python literal for ``v``: a float when it is exact in decimal, else ``p / q``."""
    d = v.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    return repr(float(v)) if d == 1 else f"{v.numerator} / {v.denominator}"


def _yaml(v: Fraction) -> str:
    text = repr(float(v))
    return text if _py(v) == text else f"{text}  # {v}"


def _tup(vs: Sequence[Fraction]) -> str:
    return "(" + ", ".join(_py(v) for v in vs) + ")"


def _lst(vs: Sequence[Fraction]) -> str:
    return "[" + ", ".join(_py(v) for v in vs) + "]"


def fragments(params: StageParams, form: str = "smooth-l1", head: str = "roi") -> dict[str, str]:
    """Config text for torchvision, detectron2 and mmdetection that sets ``params`` on ``head``."""
    if head not in HEADS:
        raise InputError(f"head must be one of {'|'.join(HEADS)}, got {head!r}")
    s = framework_settings(params, form)
    return {
        "torchvision": _torchvision(s, head),
        "detectron2": _detectron2(s, head),
        "mmdetection": _mmdetection(s, head),
    }


_KL_NOTE = "# loss kl (D_{α/2,1/α}, Appendix E) has no built-in: use huberkl.losses.KLLoss"


def _torchvision(s: dict[str, Any], head: str) -> str:
    w, beta, lam, note = _tup(s["coder_weights"]), s["beta"], _py(s["weight"]), s["weight_note"]
    if s["loss"] == "kl":
        loss = _KL_NOTE
    elif s["loss"] == "l1":
        loss = "box_loss = F.l1_loss(pred, target, reduction='sum')"
    else:
        loss = f"box_loss = F.smooth_l1_loss(pred, target, beta={_py(beta)}, reduction='sum')"
    lines = [
        "import torch.nn.functional as F",
        "from torchvision.models.detection._utils import BoxCoder",
    ]
    if head == "rpn":
        lines += [
            f"model.rpn.box_coder = BoxCoder(weights={w})  # 1/σ",
            "# rpn.py hard-codes beta=1/9: override RegionProposalNetwork.compute_loss with",
            loss + "  # / sampled anchors",
            f"losses['loss_rpn_box_reg'] = {lam} * losses['loss_rpn_box_reg']  # {note}",
        ]
    elif head == "roi":
        lines += [
            f"model.roi_heads.box_coder = BoxCoder(weights={w})  # 1/σ (FasterRCNN(bbox_reg_weights=...))",
            "# roi_heads.fastrcnn_loss hard-codes beta=1/9: subclass RoIHeads to use",
            loss + "  # / sampled RoIs",
            f"losses['loss_box_reg'] = {lam} * losses['loss_box_reg']  # {note}",
        ]
    else:
        kind = {"l1": "l1", "huber": "smooth_l1"}.get(s["loss"])
        lines += [
            f"model.box_coder = BoxCoder(weights={w})  # 1/σ, used to decode",
            f"model.head.regression_head.box_coder = BoxCoder(weights={w})  # 1/σ, used to encode",
        ]
        if kind:
            lines.append(f"model.head.regression_head._loss_type = {kind!r}")
        if kind == "smooth_l1" and beta != 1:
            lines.append(
                f"# _box_loss uses beta 1.0 unless given: subclass RetinaNetRegressionHead for beta={_py(beta)}"
            )
        if s["loss"] == "kl":
            lines.append(_KL_NOTE)
        lines.append(f"losses['bbox_regression'] = {lam} * losses['bbox_regression']  # {note}")
    return "\n".join(lines) + "\n"


def _detectron2(s: dict[str, Any], head: str) -> str:
    beta, lam = s["beta"], s["weight"]
    w = "[" + ", ".join(repr(float(v)) for v in s["coder_weights"]) + "]"
    if any(_py(v) != repr(float(v)) for v in s["coder_weights"]):
        w += "  # = [" + ", ".join(str(v) for v in s["coder_weights"]) + "]"
    section = {"rpn": "RPN", "roi": "ROI_BOX_HEAD", "retinanet": "RETINANET"}[head]
    beta_key = "SMOOTH_L1_LOSS_BETA" if head == "retinanet" else "SMOOTH_L1_BETA"
    lines = ["MODEL:", f"  {section}:"]
    if s["loss"] == "kl":
        lines.append("    " + _KL_NOTE)
    lines += [
        "    BBOX_REG_LOSS_TYPE: smooth_l1",
        f"    {beta_key}: {_yaml(beta)}" + ("  # 0 = L1" if beta == 0 else ""),
        f"    BBOX_REG_WEIGHTS: {w}" + ("" if "#" in w else "  # 1/σ"),
    ]
    if head == "retinanet":
        if lam != 1:
            lines.append(f"    # no config key for λ: scale losses['loss_box_reg'] by {_py(lam)}")
    else:
        lines.append(f"    BBOX_REG_LOSS_WEIGHT: {_yaml(lam)}  # {s['weight_note']}")
    return "\n".join(lines) + "\n"


def _mmdetection(s: dict[str, Any], head: str) -> str:
    stds = _lst(s["stds"])
    if s["loss"] == "l1":
        loss = f"dict(type='L1Loss', loss_weight={_py(s['weight'])})"
    else:
        loss = f"dict(type='SmoothL1Loss', beta={_py(s['beta'])}, loss_weight={_py(s['weight'])})"
    coder = (
        f"dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0], target_stds={stds})"
    )
    what = "loss_weight = " + s["weight_note"].split(",")[0]
    if s["loss"] != "l1":
        what = "beta = α, " + what
    body = [f"bbox_coder={coder},  # target_stds = σ", f"loss_bbox={loss},  # {what}"]
    if s["loss"] == "kl":
        body.insert(0, _KL_NOTE)
    if head == "roi":
        inner = [
            "roi_head=dict(",
            "    bbox_head=dict(",
            *(" " * 8 + b for b in body),
            "    )",
            "),",
        ]
    else:
        key = "rpn_head" if head == "rpn" else "bbox_head"
        inner = [f"{key}=dict(", *(" " * 4 + b for b in body), "),"]
    return "\n".join(["model = dict(", *(" " * 4 + i for i in inner), ")"]) + "\n"


# --------------------------------------------------------------------------- output formats


def to_json(
    readings: Sequence[Reading], preset: str | None, config: bool = False
) -> dict[str, Any]:
    """``{"preset": name or null, "stages": [...]}``; ``config`` adds framework fragments."""
    stages = []
    for r in readings:
        d = r.to_dict()
        if config:
            d["head"] = head_of(r)
            d["config"] = fragments(r.params, r.form, head_of(r))
        stages.append(d)
    return {"preset": preset, "stages": stages}


def render_json(groups: Sequence[tuple[str | None, list[Reading]]], config: bool = False) -> str:
    """One object for one preset (or custom settings), a list of them for ``--preset all``."""
    objs = [to_json(rs, name, config) for name, rs in groups]
    return json.dumps(objs[0] if len(objs) == 1 else objs, indent=2, ensure_ascii=False) + "\n"


CSV_FIELDS = (
    "preset", "stage", "form", "loss", "lambda", "alpha", "coordinate", "sigma",
    "label_noise", "prediction_noise", "label_noise_text", "prediction_noise_text",
)  # fmt: skip


def render_csv(readings: Sequence[Reading]) -> str:
    """Long format: one row per preset, stage and coordinate (exact values as fractions)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in readings:
        p, s = r.params, r.scales
        for c in COORDS:
            writer.writerow([
                r.preset or "", r.stage, r.form, p.loss, str(p.lam), str(p.effective_alpha), c,
                str(p.sigma[c]), str(s.label[c]), str(s.prediction[c]),
                scale_text(s.label[c], c), scale_text(s.prediction[c], c),
            ])  # fmt: skip
    return buf.getvalue()


ROW_NAMES = {"label": ("x*", "y*", "w*", "h*"), "prediction": ("x̃", "ỹ", "w̃", "h̃")}


def table2_rows(readings: Sequence[Reading]) -> list[list[str]]:
    """Table 2's body: rows x*, y*, w*, h* (label) then x̃, ỹ, w̃, h̃ (prediction)."""
    rows = []
    for kind in ("label", "prediction"):
        for c, name in zip(COORDS, ROW_NAMES[kind], strict=True):
            rows.append([name, *(scale_text(getattr(r.scales, kind)[c], c) for r in readings)])
    return rows


def table1_rows(readings: Sequence[Reading]) -> list[list[str]]:
    """Table 1's body: λ, α, σx, σy, σw, σh per stage, plus the loss and its form."""
    rows = [
        ["loss", *(r.params.loss for r in readings)],
        ["form", *(r.form for r in readings)],
        ["λ", *(str(r.params.lam) for r in readings)],
        ["α", *(str(r.params.effective_alpha) for r in readings)],
    ]
    rows += [[f"σ{c}", *(str(r.params.sigma[c]) for r in readings)] for c in COORDS]
    return rows


def _headers(readings: Sequence[Reading]) -> list[str]:
    return [f"{r.title or r.preset or 'custom'} · {stage_label(r)}" for r in readings]


def render_markdown(groups: Sequence[tuple[str | None, list[Reading]]]) -> str:
    """Markdown: Table 1 and Table 2 side by side for all presets, or per-stage tables."""
    readings = [r for _, rs in groups for r in rs]
    if len(groups) > 1:
        heads = _headers(readings)
        parts = ["**Settings (Table 1)**", "", _md(["", *heads], table1_rows(readings)), ""]
        parts += ["**Noise scales (Table 2)**", "", _md(["", *heads], table2_rows(readings))]
        return "\n".join(parts) + "\n"
    parts = []
    for r in readings:
        parts += [f"**{_title(r)}**", "", _md(_STAGE_COLS, _stage_rows(r)), ""]
    return "\n".join(parts)


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


_STAGE_COLS = ["coordinate", "σ", "label noise", "≈", "prediction noise", "≈"]


def _stage_rows(r: Reading) -> list[list[str]]:
    s = r.scales
    return [
        [
            c,
            str(r.params.sigma[c]),
            scale_text(s.label[c], c),
            _dec(s.label[c]),
            scale_text(s.prediction[c], c),
            _dec(s.prediction[c]),
        ]
        for c in COORDS
    ]


def _title(r: Reading) -> str:
    p = r.params
    name = f"{r.title or r.preset} · {stage_label(r)}" if r.preset else "custom settings"
    formula = (
        "λ·|t − t̃*|" if p.loss == "l1" else {"smooth-l1": "(λ/α)·H_α", "huber": "λ·H_α"}[r.form]
    )
    if p.loss == "kl":
        formula += " with H_α -> D_{α/2,1/α}"
    extra = f", normaliser: {p.normaliser}" if p.normaliser else ""
    return f"{name}: λ = {p.lam}, α = {p.effective_alpha} ({p.loss}, {formula}{extra})"


def sections(readings: Sequence[Reading]) -> list[tuple[str, list[Reading]]]:
    """Split readings into the paper's presets (Tables 1 and 2) and everything else."""
    paper = [r for r in readings if r.preset in PAPER_PRESETS]
    other = [r for r in readings if r.preset not in PAPER_PRESETS]
    out = []
    if paper:
        out.append(("The paper's settings (Table 1) and their noise scales (Table 2)", paper))
    if other:
        out.append(("Framework defaults and other settings", other))
    return out


def rich_tables(groups: Sequence[tuple[str | None, list[Reading]]]) -> list[Table]:
    """rich tables: per-stage tables for one preset; settings + Table 2 rows for several."""
    from rich.table import Table

    readings = [r for _, rs in groups for r in rs]
    tables = []
    if len(groups) > 1:
        for title, rs in sections(readings):
            t = Table(title=title, caption="noise scales in anchor units (w_a, h_a)")
            t.add_column("", style="bold", no_wrap=True)
            for r in rs:
                t.add_column(f"{r.preset}\n{stage_label(r).lower()}", justify="center")
            settings, scales = table1_rows(rs), table2_rows(rs)
            for i, row in enumerate(settings):
                t.add_row(*row, end_section=i == len(settings) - 1)
            for i, row in enumerate(scales):
                t.add_row(*row, end_section=i == 3)
            tables.append(t)
        return tables
    for r in readings:
        t = Table(title=_title(r))
        for i, col in enumerate(_STAGE_COLS):
            t.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
        for row in _stage_rows(r):
            t.add_row(*row)
        tables.append(t)
    return tables
