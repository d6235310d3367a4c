"""Typed schemas of the config groups (``toy``, ``detect``, ``data``, ``params``, ``losses``,
``scale``), registered in Hydra's ConfigStore.

``conf/config.yaml`` and ``conf/reproduce.yaml`` list each group's schema (option ``schema``
of the group) just before the group, and ``conf/data/*.yaml`` name theirs, so every YAML
merges over its schema and Hydra checks types and unknown keys while it composes
(``toy.seeds=1.5`` fails there).
Value ranges are checked in ``__post_init__``, which runs when :func:`check` turns the
composed config into these objects (``OmegaConf.to_object``) inside
:func:`huberkl.config.compose`: every bad value fails there, in one line naming the key,
before any command makes a folder.

Keys a YAML file may leave out (so that the resolved default configs, and the reproduction's
cache keys that hash them, stay as they are) are held in open ``dict`` fields and checked in
``__post_init__``: ``data.synth``'s optional keys, a stage's ``normaliser`` and any extra
``detect.model`` field of :class:`huberkl.detect.model.detectors.ModelConfig`. ``detect.model`` is
also open to plain overrides: ``detect.model.backbone_weights=IMAGENET1K_V1`` sets a field
that no YAML lists without Hydra's ``+`` (any other key is refused while composing).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import MISSING

from huberkl.errors import InputError

Number = int | float  # keeps ``16`` an int in the resolved config (a float field writes 16.0)

# The toy's allowed names, here without importing torch (tests/test_config_schema.py holds
# them equal to huberkl.toy.data.FAMILIES, grid.SOLVERS and the dtypes grid resolves).
TOY_FAMILIES = ("laplace", "logistic", "cauchy")
TOY_SOLVERS = ("exact", "gd", "both")
TOY_DTYPES = ("float32", "float64")


def _fail(key: str, value: Any, expected: str) -> None:
    raise InputError(f"{key}={value!r}: expected {expected}")


def _at_least(key: str, value: Any, least: int) -> None:
    if value < least:
        _fail(key, value, f"an integer >= {least}")


def _positive(key: str, value: Any) -> None:
    if not (math.isfinite(value) and value > 0):
        _fail(key, value, "a number > 0")


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
        _at_least("toy.seeds", self.seeds, 1)
        _at_least("toy.k", self.k, 1)
        if self.n < self.k:
            _fail("toy.n", self.n, f"an integer >= toy.k = {self.k} (training points)")
        _at_least("toy.n_test", self.n_test, 1)
        _positive("toy.delta", self.delta)
        numbers = all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in self.theta)
        if not self.theta or not numbers or not all(math.isfinite(t) for t in self.theta):
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
    ``conf/data/synth.yaml``); :meth:`__post_init__` checks what it holds. A separate
    schema, so that ``data=coco`` gets no ``synth`` key (its resolved config is unchanged).
    """

    synth: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_synth(self.synth)


def _check_synth(s: dict[str, Any]) -> None:
    """Unknown keys, then :func:`huberkl.detect.data.synth.check_args` (the check ``synthesize``
    itself runs for library callers), with the key's full name in front of its message."""
    import inspect

    from huberkl.detect.data.synth import check_args

    known = [p for p in inspect.signature(check_args).parameters if p != "_"]
    unknown = sorted(set(s) - set(known))
    if unknown:
        raise InputError(f"data.synth.{unknown[0]}: unknown key; allowed: {', '.join(known)}")
    try:
        check_args(**s)
    except InputError as exc:
        raise InputError(f"data.synth.{exc}") from None


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


@dataclass
class LossesSchema:
    """``conf/losses/*.yaml``: the arguments of :func:`huberkl.figure1.write`."""

    alphas: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])
    span: float = 3.0
    x_max: float | None = None
    num_points: int = 401
    formats: list[str] = field(default_factory=lambda: ["png", "pdf"])
    dpi: int = 150

    def __post_init__(self) -> None:
        if not self.alphas:
            _fail("losses.alphas", self.alphas, "a non-empty list of numbers > 0")
        for a in self.alphas:
            _positive("losses.alphas", a)
        _positive("losses.span", self.span)
        if self.x_max is not None:
            _positive("losses.x_max", self.x_max)
        _at_least("losses.num_points", self.num_points, 2)
        if not self.formats or any(f not in ("png", "pdf", "svg") for f in self.formats):
            _fail("losses.formats", self.formats, "a list from png|pdf|svg")
        _at_least("losses.dpi", self.dpi, 1)


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
    seeds: list[int] = field(default_factory=lambda: [0])


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
        lists += [("curve", self.curve.seeds)] if self.curve.runs else []
        for key, seeds in lists:
            if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
                _fail(f"scale.{key}.seeds", seeds, "a non-empty list of distinct seeds >= 0")
        names = [r.name for r in self.detect.runs]
        for r in self.detect.runs:
            if r.seeds is not None and r.seeds < 1:
                _fail(f"scale.detect.runs.{r.name}.seeds", r.seeds, "a count >= 1 (or null: all)")
            if r.part not in PARTS:
                _fail(f"scale.detect.runs.{r.name}.part", r.part, f"one of {', '.join(PARTS)}")
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
        if n != "auto" and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
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
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"bad override {' '.join(overrides)!r}: {first}" if overrides else first


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
