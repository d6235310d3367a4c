"""Typed schemas of the config groups (``toy``, ``detect``, ``data``, ``params``, ``losses``,
``noise``, ``scale``), registered in Hydra's ConfigStore: the one home of each setting's
default and check. The library takes these objects (``figure1.write(out, LossesSchema())``,
``synthesize(root, SynthSchema())``, ``measure.measure(NoiseSchema(...))``).

``conf/config.yaml`` and ``conf/reproduce.yaml`` list each group's schema (option ``schema``
of the group) just before the group, and ``conf/data/*.yaml`` and ``conf/noise/*.yaml`` name
theirs, so every YAML merges over its schema and Hydra checks types and unknown keys while
it composes (``toy.seeds=1.5`` fails there).
Value ranges are checked in ``__post_init__``, which runs when :func:`check` turns the
composed config into these objects (``OmegaConf.to_object``) inside
:func:`huberkl.config.compose`, and also when Python builds one itself: every bad value
fails there, in one line naming the key, before any command makes a folder.

Keys a YAML file may leave out (so that the resolved default configs, and the reproduction's
cache keys that hash them, stay as they are) are held in open ``dict`` fields and checked in
``__post_init__``: ``data.synth``'s optional keys (through :class:`SynthSchema`, which is
not a Hydra node for that reason), a stage's ``normaliser`` and any extra
``detect.model`` field of :class:`huberkl.detect.model.detectors.ModelConfig`. ``detect.model`` is
also open to plain overrides: ``detect.model.backbone_weights=IMAGENET1K_V1`` sets a field
that no YAML lists without Hydra's ``+`` (any other key is refused while composing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from omegaconf import MISSING

from huberkl.errors import InputError, is_integer, is_number

Number = int | float  # keeps ``16`` an int in the resolved config (a float field writes 16.0)

# The toy's allowed names, here without importing torch (tests/test_config_schema.py holds
# them equal to huberkl.toy.data.FAMILIES, grid.SOLVERS and the dtypes grid resolves).
TOY_FAMILIES = ("laplace", "logistic", "cauchy")
TOY_SOLVERS = ("exact", "gd", "both")
TOY_DTYPES = ("float32", "float64")


def _fail(key: str, value: Any, expected: str) -> None:
    raise InputError(f"{key}={value!r}: expected {expected}")


def _at_least(key: str, value: Any, least: int) -> None:
    # the type too: a schema object built in Python (not composed) may hold anything
    if not is_integer(value) or value < least:
        _fail(key, value, f"an integer >= {least}")


def _positive(key: str, value: Any) -> None:
    if not (is_number(value) and math.isfinite(value) and value > 0):
        _fail(key, value, "a number > 0")


def _sequence(key: str, value: Any, expected: str) -> list[Any]:
    """``value`` as a list: a list or tuple, never a string (whose letters are a sequence)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        _fail(key, value, expected)
    return list(value)


# ----------------------------------------------------------------------------- toy


@dataclass
class AlphaGrid:
    min: float = MISSING
    max: float = MISSING
    num: int = MISSING
    relative: bool = False


@dataclass
class ExactSolver:
    max_iter: int = 100
    ftol: float | None = None


@dataclass
class GradientDescent:
    lrs: list[float] = field(default_factory=list)
    steps: int = 1000
    seeds: int = 1


@dataclass
class ToySchema:
    """``conf/toy/*.yaml``: what :func:`huberkl.toy.run.build_spec` and ``run_toy`` read."""

    families: list[str] = MISSING
    scales: list[float] = MISSING
    alpha: AlphaGrid = field(default_factory=AlphaGrid)
    seeds: int = MISSING
    n: int = MISSING
    k: int = MISSING
    delta: float = MISSING
    # list[Any], checked below: with list[int | float] OmegaConf yields UnionNode objects,
    # not numbers, when the list is iterated (list(cfg.toy.theta)); float keeps 6 as 6.0.
    theta: list[Any] = MISSING
    n_test: int = MISSING
    solver: str = "exact"
    device: str = "auto"
    dtype: str = "float32"
    exact: ExactSolver = field(default_factory=ExactSolver)
    gd: GradientDescent = field(default_factory=GradientDescent)
    artefact_tol: float = 1e-5
    bootstrap: int = 1000
    chunk: int | None = None
    mem_fraction: float = 0.25
    cpu_budget_mb: Number = 16
    threads: int | None = None

    def __post_init__(self) -> None:
        if not self.families:
            _fail("toy.families", self.families, f"a non-empty list from {', '.join(TOY_FAMILIES)}")
        for f in self.families:
            if str(f).lower() not in TOY_FAMILIES:
                raise InputError(f"unknown noise family {f!r}; allowed: {', '.join(TOY_FAMILIES)}")
        if not self.scales:
            _fail("toy.scales", self.scales, "at least one noise scale > 0")
        for s in self.scales:
            _positive("toy.scales (noise scale)", s)
        _positive("toy.alpha.min", self.alpha.min)
        _positive("toy.alpha.max", self.alpha.max)
        if self.alpha.num < 1:
            _fail("toy.alpha.num", self.alpha.num, "an integer >= 1 (the α grid is empty)")
        if self.alpha.max < self.alpha.min or (
            self.alpha.max == self.alpha.min and self.alpha.num > 1
        ):
            _fail(
                "toy.alpha.max",
                self.alpha.max,
                f"a number > toy.alpha.min = {self.alpha.min!r} (the α grid runs from min to max)",
            )
        _at_least("toy.seeds", self.seeds, 1)
        _at_least("toy.k", self.k, 1)
        if self.n < self.k:
            _fail("toy.n", self.n, f"an integer >= toy.k = {self.k} (training points)")
        _at_least("toy.n_test", self.n_test, 1)
        _positive("toy.delta", self.delta)
        if not self.theta or not all(is_number(t) and math.isfinite(t) for t in self.theta):
            _fail("toy.theta", self.theta, "a non-empty list of finite numbers")
        if self.solver not in TOY_SOLVERS:
            raise InputError(f"unknown solver {self.solver!r}; allowed: {', '.join(TOY_SOLVERS)}")
        if self.dtype not in TOY_DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}; allowed: {', '.join(TOY_DTYPES)}")
        _at_least("toy.exact.max_iter", self.exact.max_iter, 1)
        if self.solver in ("gd", "both"):
            if not self.gd.lrs:
                _fail("toy.gd.lrs", self.gd.lrs, "at least one learning rate > 0")
            for lr in self.gd.lrs:
                _positive("toy.gd.lrs (learning rate)", lr)
            _at_least("toy.gd.steps", self.gd.steps, 1)
            _at_least("toy.gd.seeds", self.gd.seeds, 1)
        if not self.artefact_tol >= 0:
            _fail("toy.artefact_tol", self.artefact_tol, "a number >= 0")
        _at_least("toy.bootstrap", self.bootstrap, 1)
        if self.chunk is not None and self.chunk < 1:
            _fail("toy.chunk", self.chunk, "an integer >= 1 or null")
        if not 0 < self.mem_fraction <= 1:
            _fail("toy.mem_fraction", self.mem_fraction, "a number in (0, 1]")
        _positive("toy.cpu_budget_mb", self.cpu_budget_mb)
        if self.threads is not None and self.threads < 1:
            _fail("toy.threads", self.threads, "an integer >= 1 or null")


# ----------------------------------------------------------------------------- detect


@dataclass
class Optim:
    name: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False


@dataclass
class Schedule:
    name: str = "cosine"
    warmup_iters: int = 0
    warmup_factor: float = 1e-3
    milestones: list[float] = field(default_factory=lambda: [0.667, 0.889])
    gamma: float = 0.1


# ModelConfig's fields, here without importing torch (tests/test_config_schema.py holds them
# equal to dataclasses.fields(huberkl.detect.model.detectors.ModelConfig)).
MODEL_KEYS = (
    "arch",
    "backbone",
    "fpn_channels",
    "tiny_widths",
    "tiny_depth",
    "min_size",
    "max_size",
    "anchor_sizes",
    "aspect_ratios",
    "retinanet_head_norm",
    "target_encoding",
    "weights",
    "backbone_weights",
    "backbone_init",
    "trainable_layers",
    "frozen_bn",
    "representation_size",
    "rpn_pre_nms_top_n_train",
    "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_train",
    "rpn_post_nms_top_n_test",
    "rpn_nms_thresh",
    "rpn_fg_iou_thresh",
    "rpn_bg_iou_thresh",
    "rpn_batch_size_per_image",
    "rpn_positive_fraction",
    "box_fg_iou_thresh",
    "box_bg_iou_thresh",
    "box_batch_size_per_image",
    "box_positive_fraction",
    "fg_iou_thresh",
    "bg_iou_thresh",
    "topk_candidates",
    "score_thresh",
    "nms_thresh",
    "detections_per_img",
)


def _open_model() -> Any:
    """An empty ``detect.model`` that is not in struct mode.

    Hydra's plain ``detect.model.KEY=V`` may then add a ModelConfig field that the YAML
    leaves out (README's ``detect.model.backbone_weights=...`` on the quick config), while
    the resolved config keeps only the keys the YAML and the overrides give: declaring every
    field with its default would change the reproduction's cache keys and refuse to resume
    every existing run (:mod:`huberkl.detect.training.runs` compares resolved configs).
    """
    from omegaconf import OmegaConf

    node = OmegaConf.create({})
    OmegaConf.set_struct(node, False)
    return node


@dataclass
class DetectSchema:
    """``conf/detect/*.yaml``: what :func:`huberkl.detect.training.train.train` reads.

    ``model`` stays open: its keys are :class:`huberkl.detect.model.detectors.ModelConfig` fields
    (:data:`MODEL_KEYS`, checked here; their values are checked by that dataclass), and
    any of them may be set with ``detect.model.KEY=V``, whether the YAML lists it or not.
    """

    model: dict[str, Any] = field(default_factory=_open_model)
    iters: int = MISSING
    batch_size: int = MISSING
    workers: int = 0
    hflip: bool = True
    threads: int | None = None
    device: str = "auto"
    amp: bool = True
    sync_bn: bool = False
    clip_grad_norm: float = 0.0
    optim: Optim = field(default_factory=Optim)
    schedule: Schedule = field(default_factory=Schedule)
    ckpt_every: int = 0
    resume: Any = False  # false | true | a run folder or checkpoint path
    eval: bool = True
    eval_batch_size: int = 1
    log: str = "csv"

    def __post_init__(self) -> None:
        unknown = [k for k in self.model if k not in MODEL_KEYS]
        if unknown:
            raise InputError(
                f"detect.model.{unknown[0]}: unknown key; allowed: {', '.join(MODEL_KEYS)}"
            )
        _at_least("detect.iters", self.iters, 0)
        _at_least("detect.batch_size", self.batch_size, 1)
        _at_least("detect.workers", self.workers, 0)
        _at_least("detect.ckpt_every", self.ckpt_every, 0)
        _at_least("detect.eval_batch_size", self.eval_batch_size, 1)
        if self.threads is not None and self.threads < 1:
            _fail("detect.threads", self.threads, "an integer >= 1 or null")
        if self.clip_grad_norm < 0:
            _fail("detect.clip_grad_norm", self.clip_grad_norm, "a number >= 0 (0 disables)")
        if self.optim.name not in ("sgd", "adamw"):
            _fail("detect.optim.name", self.optim.name, "sgd or adamw")
        _positive("detect.optim.lr", self.optim.lr)
        if self.schedule.name not in ("step", "cosine", "constant"):
            _fail("detect.schedule.name", self.schedule.name, "step, cosine or constant")
        _at_least("detect.schedule.warmup_iters", self.schedule.warmup_iters, 0)
        if self.log not in ("csv", "tensorboard"):
            _fail("detect.log", self.log, "csv or tensorboard")
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda"):
            _fail("detect.device", self.device, "auto, cpu, cuda or cuda:N")


# ----------------------------------------------------------------------------- data


@dataclass
class DataSchema:
    """``conf/data/*.yaml``: a COCO-layout set on disk (``conf/data/coco.yaml``)."""

    name: str = MISSING
    root: str = MISSING
    train_images: str = MISSING
    val_images: str = MISSING
    train_ann: str = MISSING
    val_ann: str = MISSING
    min_size: float = 1.0

    def __post_init__(self) -> None:
        if not self.min_size >= 0:
            _fail("data.min_size", self.min_size, "a number >= 0")


@dataclass
class SynthDataSchema(DataSchema):
    """``conf/data/synth.yaml``: the set on disk plus the arguments of ``synthesize``.

    ``synth`` is open because three of its keys are optional (absent by default, see
    ``conf/data/synth.yaml``); :meth:`__post_init__` checks what it holds through
    :class:`SynthSchema`, which owns their defaults. A separate schema, so that ``data=coco``
    gets no ``synth`` key (its resolved config is unchanged).
    """

    synth: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        SynthSchema.from_mapping(self.synth)


# The synthetic set's noise (huberkl.detect.data.synth reads them from here): per-edge moves
# (the original model) with these families, or the paper's targets with every family of
# huberkl.distributions.FAMILIES.
SYNTH_NOISES = ("laplace", "gaussian", "none")
SYNTH_NOISE_MODELS = ("edges", "targets")


@dataclass
class SynthSchema:
    """``data.synth``: the arguments of :func:`huberkl.detect.data.synth.synthesize`.

    Not a Hydra node (``data.synth`` stays an open mapping, so that the optional keys stay
    absent from the resolved config and from the reproduction's cache keys): built from the
    mapping by :meth:`from_mapping`, or directly by library callers. :meth:`__post_init__`
    converts and checks every value; a bad one is one line naming ``data.synth.<key>``.
    """

    images: int = 800
    size: int = 128
    seed: int = 0
    noise: str = "none"
    noise_scale: float = 0.05
    val_images: int = 200
    noise_model: str = "edges"
    # x, y, w, h (targets only), or "x,y,w,h"; None: noise_scale for all four
    noise_scales: list[float] | str | None = None
    copies: int = 1

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SynthSchema:
        """The checked object of a ``data.synth`` section; an unknown key is refused."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise InputError(f"data.synth.{unknown[0]}: unknown key; allowed: {', '.join(known)}")
        return cls(**mapping)

    @property
    def scales(self) -> list[float]:
        """The noise scale of each coordinate x, y, w, h."""
        return list(self.noise_scales) if self.noise_scales is not None else [self.noise_scale] * 4

    def __post_init__(self) -> None:
        given = asdict(self)  # the messages show each value as it was given
        self.images = _synth_number("images", self.images, int)
        self.size = _synth_number("size", self.size, int)
        self.seed = _synth_number("seed", self.seed, int)
        self.noise_scale = _synth_number("noise_scale", self.noise_scale, float)
        self.val_images = _synth_number("val_images", self.val_images, int)
        if self.images < 1:
            raise InputError(f"data.synth.images={given['images']}: need at least 1 train image")
        if self.val_images < 1:
            raise InputError(
                f"data.synth.val_images={given['val_images']}: need at least 1 val image"
            )
        if self.size < 32:
            raise InputError(f"data.synth.size={given['size']}: images must be at least 32 px")
        self._check_noise(given["noise_scale"])
        self.copies = _synth_number("copies", self.copies, int)
        if self.copies < 1:
            raise InputError(f"data.synth.copies={given['copies']}: need at least 1 noisy copy")

    def _check_noise(self, given_scale: Any) -> None:
        from huberkl.distributions import FAMILIES

        model = self.noise_model
        if model not in SYNTH_NOISE_MODELS:
            raise InputError(
                f"data.synth.noise_model={model!r}: allowed are {', '.join(SYNTH_NOISE_MODELS)}"
            )
        allowed = SYNTH_NOISES if model == "edges" else (*FAMILIES, "none")
        if self.noise not in allowed:
            with_model = "" if model == "edges" else f" with noise_model={model}"
            raise InputError(
                f"data.synth.noise={self.noise!r}: allowed{with_model} are {', '.join(allowed)}"
            )
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):
            raise InputError(f"data.synth.noise_scale={given_scale}: must be a finite number >= 0")
        self.noise_scales = _synth_scales(self.noise_scales, model)


def _synth_number(key: str, value: Any, kind: type) -> Any:
    """``value`` as an int or a float (``"3"`` and ``3.0`` are the integer 3), or refused."""
    try:
        if isinstance(value, bool) or (kind is int and float(value) != int(float(value))):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        expected = "an integer" if kind is int else "a number"
        raise InputError(f"data.synth.{key}={value!r}: must be {expected}") from None


def _synth_scales(value: Any, model: str) -> list[float] | None:
    """``noise_scales`` as 4 numbers (from a list or ``"x,y,w,h"``), or None when not given."""
    if value is None:
        return None
    if model != "targets":
        raise InputError(
            "data.synth.noise_scales needs noise_model=targets (the edge model has one scale)"
        )
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Sequence) or len(items) != 4:
        raise InputError(f"data.synth.noise_scales={value!r}: give 4 numbers x,y,w,h")
    out = [float(_synth_number("noise_scales", v, float)) for v in items]
    if not all(math.isfinite(v) and v >= 0 for v in out):
        raise InputError(f"data.synth.noise_scales={value!r}: must be finite numbers >= 0")
    return out


# ----------------------------------------------------------------------------- params


@dataclass
class ParamsSchema:
    """``conf/params/*.yaml``: a box-loss preset. Numbers are strings such as ``"1/9"``
    (exact fractions), so stages stay open; :class:`huberkl.params.Preset` checks them."""

    name: str = MISSING
    title: str = ""
    source: str = ""
    form: str = "smooth-l1"
    stages: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from huberkl.params import Preset

        try:
            Preset.from_mapping(asdict(self))
        except InputError as exc:
            raise InputError(f"params ({self.name}): {exc}") from None


# ----------------------------------------------------------------------------- losses


LOSSES_FORMATS = ("png", "pdf", "svg")  # the figure files huberkl.figure1.plot can write


@dataclass
class LossesSchema:
    """``conf/losses/*.yaml``: the settings of :mod:`huberkl.figure1` (``write`` takes them).

    The one home of their defaults and checks: :meth:`__post_init__` also runs when Python
    builds the object itself (``figure1.write(out, LossesSchema(alphas=[2.0]))``), so it
    checks types too, which Hydra checked already for a composed config.
    """

    alphas: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])
    span: float = 3.0
    x_max: float | None = None
    num_points: int = 401
    formats: list[str] = field(default_factory=lambda: ["png", "pdf"])
    dpi: int = 150

    def __post_init__(self) -> None:
        alphas = _sequence("losses.alphas", self.alphas, "a non-empty list of numbers > 0")
        if not alphas:
            _fail("losses.alphas", self.alphas, "a non-empty list of numbers > 0")
        for a in alphas:
            _positive("losses.alphas", a)
        self.alphas = [float(a) for a in alphas]
        _positive("losses.span", self.span)
        if self.x_max is not None:
            _positive("losses.x_max", self.x_max)
        _at_least("losses.num_points", self.num_points, 2)
        allowed = f"a non-empty list from {'|'.join(LOSSES_FORMATS)}"
        formats = _sequence("losses.formats", self.formats, allowed)
        if not formats or any(f not in LOSSES_FORMATS for f in formats):
            _fail("losses.formats", self.formats, allowed)
        self.formats = formats
        _at_least("losses.dpi", self.dpi, 1)


# ----------------------------------------------------------------------------- noise


NOISE_FORMATS = ("table", "json", "csv")  # how `huberkl noise` prints (huberkl.noise.render)


@dataclass
class NoiseSchema:
    """``conf/noise/*.yaml``: what ``huberkl noise`` measures and how, one key per option.

    Exactly one source: ``annotations`` with ``reference`` (two COCO files of the same
    images), ``iou_agreement`` (a reported mean IoU between two annotators) or ``residuals``
    (a CSV of a pilot fit's residuals). :func:`huberkl.noise.measure.measure` takes this
    object. A bad value is one line naming the key and the option that sets it.
    """

    annotations: str | None = None  # ANN.json, the annotations measured
    reference: str | None = None  # --reference: a COCO file of the same images
    reference_kind: str = "gold"  # --reference-kind: gold (exact) | peer (as noisy)
    min_iou: float = 0.5  # --min-iou: matched pairs need at least this IoU
    iou_agreement: float | None = None  # --iou-agreement
    family: str = "laplace"  # --family: the noise family of --iou-agreement
    residuals: str | None = None  # --residuals
    column: str = "r"  # --column of --residuals
    preset: str = "exp-c"  # --preset: its label/prediction ratio sets the prediction noise
    pred_noise: str | None = None  # --pred-noise: x,y,w,h prediction-noise scales instead
    name: str | None = None  # --name of the params preset written; None: from the source
    resamples: int = 200  # --resamples: bootstrap resamples for the 95 % intervals
    seed: int = 0  # --seed of the bootstrap
    figure: bool = True  # --figure/--no-figure: errors.png
    format: str = "table"  # --format: table | json | csv

    def __post_init__(self) -> None:
        from huberkl.distributions import check_family
        from huberkl.noise.fit import MODES

        if self.format not in NOISE_FORMATS:
            _refuse("format", self.format, f"--format must be one of {'|'.join(NOISE_FORMATS)}")
        if self.reference_kind not in MODES:
            _refuse("reference_kind", self.reference_kind, "--reference-kind must be gold or peer")
        if not is_integer(self.resamples):
            _refuse("resamples", self.resamples, "--resamples must be an integer >= 0")
        if self.resamples < 0:
            _refuse("resamples", self.resamples, "--resamples must be >= 0")
        self._check_source()
        if not is_number(self.min_iou) or not 0.0 < self.min_iou <= 1.0:
            _refuse("min_iou", self.min_iou, "--min-iou must be in (0, 1]")
        q = self.iou_agreement
        if q is not None and (not is_number(q) or not 0.0 < q <= 1.0):
            _refuse("iou_agreement", q, "--iou-agreement must be in (0, 1]")
        try:
            check_family(self.family)
        except InputError as exc:
            raise InputError(f"noise.family: {exc}") from None
        if not is_integer(self.seed):
            _refuse("seed", self.seed, "--seed must be an integer")
        if self.pred_noise is not None:
            self._check_pred_noise()

    def _check_pred_noise(self) -> None:
        """Every coordinate's prediction noise, > 0: the read-off divides by it."""
        from huberkl.interpret import parse_coords

        rule = "--pred-noise must be one scale > 0 or four (x,y,w,h), e.g. 1/20 or wa/10,ha/10,wa/5,ha/5"
        try:
            given = parse_coords(self.pred_noise, "prediction noise", scale=True)
        except InputError:
            _refuse("pred_noise", self.pred_noise, rule)
        if any(v is None or v <= 0 for v in given.values()):
            _refuse("pred_noise", self.pred_noise, rule)

    def _check_source(self) -> None:
        ways = [
            self.annotations is not None or self.reference is not None,
            self.iou_agreement is not None,
            self.residuals is not None,
        ]
        if sum(ways) != 1:
            raise InputError(
                "give exactly one of: ANN.json --reference REF.json, --iou-agreement q, "
                "--residuals FILE.csv (noise.annotations and noise.reference, "
                "noise.iou_agreement, noise.residuals)"
            )
        if ways[0] and (self.annotations is None or self.reference is None):
            raise InputError(
                f"noise.annotations={self.annotations!r}, noise.reference={self.reference!r}: "
                "ANN.json and --reference REF.json go together"
            )


def _refuse(key: str, value: Any, rule: str) -> None:
    """One line naming the key, its value and the rule (in the words of the option)."""
    raise InputError(f"noise.{key}={value!r}: {rule}")


# ----------------------------------------------------------------------------- scale


PARTS = ("tables", "retinanet", "curves", "sweep")  # the groups of training runs (ScaleRun.part)


@dataclass
class ScaleRun:
    name: str = MISSING
    title: str = ""
    arch: str = "faster_rcnn"
    overrides: list[str] = field(default_factory=list)
    seeds: int | None = None  # how many of scale.detect.seeds it runs (the first); None: all
    part: str = "tables"  # which `make reproduce PART=...` trains it


@dataclass
class ScalePretrain:
    """A backbone per seed, pretrained on a pretext set and shared by every setting of that
    seed, as ImageNet is in the paper: each detection run starts from it
    (``detect.model.backbone_init``); only its heads start from scratch."""

    synth: list[str] = field(default_factory=list)  # the pretext set's overrides; []: none
    arch: str = "faster_rcnn"  # whose protocol config it trains with
    overrides: list[str] = field(default_factory=list)  # of its training run
    # None: one backbone per seed; a seed: one backbone (of that seed) for every seed, as
    # the paper's runs all start from the same ImageNet weights
    seed: int | None = None
    # arch -> overrides of a whole detector of that arch pretrained on the pretext set from
    # the backbone above (its own heads and extra levels too); that arch's runs then start
    # from the whole detector (``detect.model.weights``) instead of the backbone alone
    detectors: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ScalePart:
    """``make reproduce PART=<name>``: the training runs that match every non-empty field,
    so that a reproduction too long for one sitting runs a part at a time."""

    groups: list[str] = field(default_factory=list)  # of PARTS (a run's ``part``; curves)
    runs: list[str] = field(default_factory=list)  # scale.detect.runs names (and their curves)
    seeds: list[int] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)  # the sweep's noise scales


@dataclass
class ScaleCurve:
    """The learning curve: some settings also trained at other multiples of their
    schedule (``detect.iters``), paired by seed with the tables' runs (multiple 1)."""

    runs: list[str] = field(default_factory=list)  # names of scale.detect.runs
    multiples: list[float] = field(default_factory=list)  # e.g. [0.25, 0.5, 2]
    # []: every seed of each run's own table runs, so that the convergence check pairs a
    # difference's change with the same seeds as the verdict it guards
    seeds: list[int] = field(default_factory=list)


@dataclass
class ScaleDetect:
    data: str = "coco"
    configs: dict[str, str] = field(default_factory=dict)
    common: list[str] = field(default_factory=list)
    runs: list[ScaleRun] = field(default_factory=list)
    nproc: Any = 1  # a count, or auto (one process per visible GPU)
    seeds: list[int] = field(default_factory=lambda: [0])  # every run, once per seed (paired)


@dataclass
class ScaleSweep:
    """The noise sweep ("Figure 2 for detectors"): synthetic sets at several noise scales,
    each measured by ``huberkl noise`` and trained with the settings read off it."""

    scales: list[float] = field(default_factory=list)  # x, y label-noise scales; [] = no sweep
    shape: list[float] = field(default_factory=lambda: [1.0, 1.0, 2.0, 2.0])  # x, y, w, h
    arch: str = "faster_rcnn"
    preset: str = "exp-c"  # whose label/prediction ratio `huberkl noise` carries over
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.25, 1.0, 4.0])  # × matched α
    fixed: list[str] = field(default_factory=lambda: ["implementation"])  # presets as they are
    # presets trained with only their α matched to the measured noise (a practitioner's
    # first change): α of each stage = the measured label noise / the preset's σ
    alpha_only: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass
class ScaleSchema:
    """``conf/scale/*.yaml``: the plan of :mod:`huberkl.reproduce`."""

    name: str = MISSING
    jobs: int = 1
    losses: list[str] = field(default_factory=list)
    toy: list[str] = field(default_factory=list)
    synth: list[str] = field(default_factory=list)
    detect: ScaleDetect = field(default_factory=ScaleDetect)
    curve: ScaleCurve = field(default_factory=ScaleCurve)
    pretrain: ScalePretrain = field(default_factory=ScalePretrain)
    sweep: ScaleSweep = field(default_factory=ScaleSweep)
    # beside the PARTS groups; null: none (a scale that inherits another's and not its parts)
    parts: dict[str, ScalePart] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        _at_least("scale.jobs", self.jobs, 1)
        lists = [("detect", self.detect.seeds), ("sweep", self.sweep.seeds)]
        lists += [("curve", self.curve.seeds)] if self.curve.runs and self.curve.seeds else []
        for key, seeds in lists:
            if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
                _fail(f"scale.{key}.seeds", seeds, "a non-empty list of distinct seeds >= 0")
        names = [r.name for r in self.detect.runs]
        for r in self.detect.runs:
            if r.seeds is not None and r.seeds < 1:
                _fail(f"scale.detect.runs.{r.name}.seeds", r.seeds, "a count >= 1 (or null: all)")
            if r.part not in PARTS:
                _fail(f"scale.detect.runs.{r.name}.part", r.part, f"one of {', '.join(PARTS)}")
        for arch in self.pretrain.detectors:
            if arch not in self.detect.configs:
                _fail(
                    "scale.pretrain.detectors",
                    arch,
                    f"an arch of scale.detect.configs ({', '.join(self.detect.configs)})",
                )
        for name in self.curve.runs:
            if name not in names:
                _fail("scale.curve.runs", name, f"a name of scale.detect.runs ({', '.join(names)})")
        if any(not m > 0 for m in self.curve.multiples):
            _fail("scale.curve.multiples", self.curve.multiples, "multiples > 0 of the schedule")
        for s in self.sweep.scales:
            _positive("scale.sweep.scales", s)
        if len(self.sweep.shape) != 4:
            _fail("scale.sweep.shape", self.sweep.shape, "four factors (x, y, w, h)")
        for f in self.sweep.shape:
            _positive("scale.sweep.shape", f)
        if any(a < 0 for a in self.sweep.alphas):
            _fail("scale.sweep.alphas", self.sweep.alphas, "multiples >= 0 (0: an L1 loss)")
        n = self.detect.nproc
        if n != "auto" and (not is_integer(n) or n < 1):
            _fail("scale.detect.nproc", n, "an integer >= 1 or auto")
        self._check_parts()

    def _check_parts(self) -> None:
        names = [r.name for r in self.detect.runs]
        for key, p in (self.parts or {}).items():
            if key in PARTS:
                _fail("scale.parts", key, f"a name other than the groups {', '.join(PARTS)}")
            for g in p.groups:
                if g not in PARTS:
                    _fail(f"scale.parts.{key}.groups", g, f"one of {', '.join(PARTS)}")
            for r in p.runs:
                if r not in names:
                    _fail(f"scale.parts.{key}.runs", r, "a name of scale.detect.runs")
            for v in p.scales:
                if v not in self.sweep.scales:
                    _fail(f"scale.parts.{key}.scales", v, f"one of {list(self.sweep.scales)}")


GROUPS: dict[str, type] = {
    "toy": ToySchema,
    "detect": DetectSchema,
    "data": DataSchema,
    "params": ParamsSchema,
    "losses": LossesSchema,
    "noise": NoiseSchema,
    "scale": ScaleSchema,
}


def register() -> None:
    """Store each schema as option ``schema`` of its group (``conf/config.yaml`` and
    ``conf/reproduce.yaml`` name them; ``conf/data/*.yaml`` name theirs, which differ)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, node in GROUPS.items():
        cs.store(group=group, name="schema", node=node)
    cs.store(group="data", name="synth_schema", node=SynthDataSchema)


def settings(group: str, node: Any) -> Any:
    """The checked schema object of ``group`` from a config section or a plain mapping.

    For library callers that pass a section that was not composed by
    :func:`huberkl.config.compose` (``run_toy(cfg)`` from Python): the same checks apply.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(GROUPS[group]), node))
    except OmegaConfBaseException as exc:
        raise InputError(describe(exc, prefix=f"{group}.")) from None


def describe(exc: BaseException, overrides: Any = (), prefix: str = "") -> str:
    """One line for a compose error: ``key: what was wrong`` when OmegaConf names the key."""
    from omegaconf.errors import OmegaConfBaseException

    cause: BaseException | None = exc
    while cause is not None:
        key = (
            getattr(cause, "full_key", None) if isinstance(cause, OmegaConfBaseException) else None
        )
        if key:
            msg = getattr(cause, "msg", None) or str(cause)
            return f"{prefix}{key}: {msg.strip().splitlines()[0]}"
        cause = cause.__cause__
    missing = _missing_option(str(exc), overrides)
    if missing:
        return missing
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"bad override {' '.join(overrides)!r}: {first}" if overrides else first


def _missing_option(text: str, overrides: Any) -> str | None:
    """``toy=nope: no such toy config; allowed: paper, smoke`` from Hydra's many-line error."""
    import re

    found = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if not found:
        return None
    group, name = found.groups()
    listed = re.search(rf"Available options in '{re.escape(group)}':\n((?:\t.*\n?)*)", text)
    names = [] if listed is None else [n.strip() for n in listed.group(1).splitlines()]
    names = [n for n in names if n and not n.endswith("schema")]  # the schemas' store entries
    given = next(
        (o for o in overrides if str(o).lstrip("+~").partition("=")[0].strip() == group),
        f"{group}={name}",
    )
    allowed = f"allowed: {', '.join(names)}" if names else f"conf/{group}/ has no such file"
    return f"{given}: no such {group} config; {allowed}"


def check(cfg: Any) -> None:
    """Build every group's schema object from a composed config: runs the range checks.

    A group whose value is still missing (``data.root: ???`` of ``data=coco``) is left to
    the code that reads it, so that ``--cfg`` can still show such a config.
    """
    from dataclasses import fields

    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    for group, schema in GROUPS.items():
        node = cfg.get(group) if hasattr(cfg, "get") else None
        if node is None or not OmegaConf.is_config(node):
            continue
        typed = OmegaConf.get_type(node)
        if isinstance(typed, type) and issubclass(typed, schema):
            schema = typed  # e.g. SynthDataSchema
        known = [f.name for f in fields(schema)]
        extra = [k for k in node if k not in known]  # ``+group.key=v`` opens the struct
        if extra:
            raise InputError(f"{group}.{extra[0]}: unknown key; allowed: {', '.join(known)}")
        try:
            OmegaConf.to_object(node)
        except (MissingMandatoryValue, InterpolationToMissingValueError):
            continue
