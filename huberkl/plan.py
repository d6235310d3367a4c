"""The plan of ``make reproduce``: which ``huberkl`` steps, with which overrides, per seed.

The plan is ``conf/reproduce.yaml`` with its ``scale`` group: figures and tables, the
synthetic sets, the noise sweep's measurements (``huberkl noise``), and one detection run
per setting and seed. The sweep's runs read the settings its measurements wrote, so
:func:`sweep_steps` builds them once those steps are done; :mod:`huberkl.reproduce` runs
the plan.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from huberkl import __version__, config
from huberkl.errors import InputError


@dataclass
class Step:
    """One ``huberkl`` invocation: its folder name, words, options and Hydra overrides."""

    name: str
    words: list[str]
    options: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    resumable: bool = False
    title: str = ""
    writes: bool = True  # False: the command only prints (interpret); its stdout is kept
    nproc: int = 1  # > 1: launched through torchrun, one process per GPU
    setting: str = ""  # detection: the setting this run trains (its name less the seed)
    seed: int | None = None
    after: Step | None = None  # the step whose output this one reads: its key is in this one's
    serves: list[str] = field(default_factory=list)  # other settings that are this same run
    part: str = ""  # training runs: their group (schema.PARTS), which `make reproduce PART=` picks
    run: str = ""  # training runs of scale.detect.runs and their curves: that run's name
    scale: float | None = None  # sweep runs: the noise scale of their set
    _key: str | None = field(default=None, init=False, repr=False, compare=False)
    _config: DictConfig | None = field(default=None, init=False, repr=False, compare=False)

    def argv(self, out: Path) -> list[str]:
        where = ["--out", str(out)] if self.writes else []
        return ["huberkl", *self.words, *where, *self.options, *self.overrides]

    def key(self) -> str:
        """Hash of the words, options and the resolved config the overrides give (and of
        the step it reads, ``after``). Composed once per step: every run of a seed shares
        its pretraining step, whose key would otherwise be recomposed for each of them."""
        if self._key is None:
            self._key = self._compute_key()
        return self._key

    def resolved(self) -> DictConfig:
        """The config the overrides give, composed once (the key and the run length read it)."""
        if self._config is None:
            self._config = config.compose(self.overrides)
        return self._config

    def iters(self) -> int:
        """The training steps of a detection run (its resolved ``detect.iters``)."""
        return int(self.resolved().detect.iters)

    def _compute_key(self) -> str:
        resolved = config.to_yaml(self.resolved())
        extra = ""
        if self.words[:1] == ["interpret"]:  # interpret reads every preset file directly
            extra = "".join(
                p.read_text(encoding="utf-8")
                for p in sorted((config.CONF_DIR / "params").glob("*.yaml"))
            )
        blob = json.dumps([__version__, self.words, self.options, resolved, extra])
        if self.after is not None:  # only where set, so the keys of older steps stay as they were
            blob += self.after.key()
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_plan(
    scale: str, coco: str | None = None, overrides: list[str] | None = None
) -> DictConfig:
    """Compose ``conf/reproduce.yaml`` for ``scale``; ``full`` needs a COCO folder."""
    extra = [f"scale={scale}", *(overrides or [])]
    if coco:
        extra.append(f"coco={coco}")
    cfg = config.compose(extra, config_name="reproduce")
    if scale == "full" and not cfg.get("coco"):
        raise InputError(
            "SCALE=full needs COCO=/path/to/coco (a folder with train2017/, val2017/, annotations/)"
        )
    return cfg


def _nproc(value: int | str) -> int:
    """Processes per training run: a number, or ``auto`` (one per visible GPU, at least 1)."""
    if str(value) == "auto":
        import torch

        return max(1, torch.cuda.device_count())
    return max(1, int(value))


def _scales_override(scales: list[float]) -> str:
    return f"+data.synth.noise_scales=[{','.join(f'{v:g}' for v in scales)}]"


def sweep_sets(plan: DictConfig) -> list[tuple[float, str, list[str]]]:
    """``(scale, set name, synth overrides)`` of each sweep scale: the main set's overrides
    with the noise scales replaced; the scale whose set is the main one reuses it (``synth``)."""
    s = plan.scale
    if plan.get("coco") or not s.sweep.scales:
        return []
    base = [o for o in s.synth if not o.startswith("+data.synth.noise_scales=")]
    out = []
    for scale in s.sweep.scales:
        synth, name = [*base, _scales_override([scale * f for f in s.sweep.shape])], "synth"
        if sorted(synth) == sorted(s.synth):
            synth = list(s.synth)  # the same runs as Tables 3-6 are then recognised as such
        else:
            name = f"synth-{scale:g}"
        out.append((float(scale), name, synth))
    return out


def build_steps(plan: DictConfig, root: Path) -> list[Step]:
    """The ordered steps that need no measurement: figures, tables, the synthetic sets,
    the noise measurements of the sweep and the detection runs of Tables 3-6, per seed."""
    s = plan.scale
    steps = [
        Step("figure1", ["losses"], overrides=list(s.losses), title="Figure 1"),
        Step(
            "tables12",
            ["interpret"],
            options=["--preset", "all", "--format", "json"],
            title="Tables 1 and 2",
            writes=False,
        ),
        Step(
            "figure2",
            ["toy"],
            options=["--solver", "both"],
            overrides=list(s.toy),
            title="Figure 2",
        ),
    ]
    data_overrides: list[str] = []
    if plan.get("coco"):
        data_overrides = [f"data={s.detect.data}", f"data.root={plan.coco}"]
    else:
        steps.append(
            Step("synth", ["data", "synth"], overrides=list(s.synth), title="Synthetic data")
        )
        # The synth overrides go to the trainers too: their data check then finds the set
        # made by the synth step (same arguments) instead of making the default one.
        data_overrides = [f"data.root={root / 'synth'}", *s.synth]
    sets = {st.name: st for st in steps if st.name == "synth"}
    for scale, name, synth in sweep_sets(plan):
        if name not in sets:
            sets[name] = Step(
                name, ["data", "synth"], overrides=synth, title=f"Sweep set, noise {scale:g}"
            )
            steps.append(sets[name])
        ann = root / name / "annotations"
        steps.append(
            Step(
                f"noise-{scale:g}",
                ["noise", str(ann / "instances_train.json")],
                options=[
                    "--reference",
                    str(ann / "instances_train_clean.json"),
                    "--preset",
                    str(s.sweep.preset),
                    "--name",
                    "matched",
                    "--format",
                    "json",
                    "--no-figure",
                ],
                title=f"Label noise of the sweep set {scale:g}, measured",
                after=sets[name],
            )
        )
    nproc = _nproc(s.detect.get("nproc", 1))
    pretrained = pretrain_steps(plan, root, nproc)
    steps += [st for st in pretrained.values() if st.name == PRETEXT]
    for run in s.detect.runs:
        count = run.get("seeds")
        for seed in s.detect.seeds[:count] if count is not None else s.detect.seeds:
            start, after = starts_from(pretrained, root, int(seed), run.arch)
            steps.append(
                Step(
                    f"{run.name}-s{seed}",
                    ["detect", "train"],
                    overrides=[
                        f"detect={s.detect.configs[run.arch]}",
                        *data_overrides,
                        *s.detect.common,
                        *start,
                        *run.overrides,
                        f"seed={seed}",
                    ],
                    resumable=True,
                    nproc=nproc,
                    title=f"{run.get('title', run.name)}, seed {seed}",
                    setting=str(run.name),
                    seed=int(seed),
                    part=str(run.get("part", "tables")),
                    run=str(run.name),
                    after=after,
                )
            )
    pre = [st for st in pretrained.values() if st.name != PRETEXT]
    return [*_ordered(steps, pre), *curve_steps(plan, steps)]


PRETEXT = "pretext"  # the pretext set's step; its runs are pretrain-s<seed>
# The committed copy of a pretraining run keeps its backbone (body and FPN tensors, ~12 MB
# for `tiny`), or the whole detector of a detector pretraining (``pretrain-<arch>-s<seed>``):
# parts trained on other machines then start from the very same weights.
BACKBONE = "backbone.pt"
DETECTOR = "detector.pt"
START = "checkpoint.pt"  # the file of a pretraining run that the runs' backbone_init names


def in_part(step: Step, plan: DictConfig, part: str) -> bool:
    """Whether ``make reproduce PART=part`` trains ``step``: a group of schema.PARTS, or a
    part of ``scale.parts`` (every non-empty field must match)."""
    from huberkl.schema import PARTS

    if part in PARTS:
        return step.part == part
    p = (plan.scale.parts or {})[part]
    return (
        (not p.groups or step.part in p.groups)
        and (not p.runs or step.run in p.runs)
        and (not p.seeds or step.seed in p.seeds)
        and (not p.scales or step.scale in p.scales)
    )


def _ordered(steps: list[Step], pre: list[Step]) -> list[Step]:
    """The pretraining runs just before the first detection run (they come first)."""
    first = next((i for i, st in enumerate(steps) if st.seed is not None), len(steps))
    return [*steps[:first], *pre, *steps[first:]]


def plan_seeds(plan: DictConfig) -> list[int]:
    """Every seed a detection run of the plan uses (tables, curve, sweep)."""
    s = plan.scale
    seeds = [*s.detect.seeds, *s.sweep.seeds, *(s.curve.seeds if s.curve.runs else [])]
    return sorted({int(k) for k in seeds})


def pretrain_steps(plan: DictConfig, root: Path, nproc: int = 1) -> dict[str, Step]:
    """The pretext set and one pretraining run per seed, or one for all (``scale.pretrain.seed``);
    none without ``scale.pretrain.synth`` or on COCO, whose detectors start from ImageNet
    weights instead."""
    s = plan.scale
    pt = s.get("pretrain")
    if pt is None or not pt.synth or plan.get("coco"):
        return {}
    pretext = Step(PRETEXT, ["data", "synth"], overrides=list(pt.synth), title="Pretext set")
    out = {PRETEXT: pretext}
    shared = pt.get("seed")
    seeds = plan_seeds(plan) if shared is None else [int(shared)]

    def pretraining(
        name: str, arch: str, extra: list[str], title: str, after: Step, seed: int
    ) -> Step:
        overrides = [f"detect={s.detect.configs[arch]}", f"data.root={root / PRETEXT}"]
        overrides += [*pt.synth, *s.detect.common, *extra]
        return Step(
            name,
            ["detect", "train"],
            overrides=[*overrides, f"seed={seed}"],
            resumable=True,
            nproc=nproc,
            title=f"{title}, seed {seed}",
            part="pretrain",
            after=after,
        )

    for seed in seeds:
        name = f"pretrain-s{seed}"
        out[name] = pretraining(
            name,
            pt.arch,
            list(pt.overrides),
            "Backbone pretraining on the pretext set",
            pretext,
            seed,
        )
    for arch, extra in (pt.get("detectors") or {}).items():
        for seed in seeds:
            backbone = out[f"pretrain-s{seed}"]
            start = f"detect.model.backbone_init={root / backbone.name / START}"
            title = f"{arch} pretraining on the pretext set, from the backbone"
            out[f"pretrain-{arch}-s{seed}"] = pretraining(
                f"pretrain-{arch}-s{seed}", arch, [start, *extra], title, backbone, seed
            )
    return out


def whole_detector(name: str) -> bool:
    """Whether a pretraining step ``name`` is a whole detector's (``pretrain-<arch>-s<seed>``)
    rather than the backbone's (``pretrain-s<seed>``)."""
    return re.fullmatch(r"pretrain-s\d+", name) is None


def starts_from(
    pretrained: dict[str, Step], root: Path, seed: int, arch: str
) -> tuple[list[str], Step | None]:
    """The override that starts a seed's ``arch`` run from its pretrained whole detector
    where the plan pretrains one, else from its pretrained backbone, and that step (the
    one shared start where there is only one)."""

    def pick(prefix: str) -> Step | None:
        mine = [st for name, st in pretrained.items() if re.fullmatch(rf"{prefix}-s\d+", name)]
        return mine[0] if len(mine) == 1 else pretrained.get(f"{prefix}-s{seed}")

    whole = pick(f"pretrain-{arch}")
    if whole is not None:
        return [f"detect.model.weights={root / whole.name / START}"], whole
    step = pick("pretrain")
    if step is None:
        return [], None
    return [f"detect.model.backbone_init={root / step.name / START}"], step


def schedule_length(plan: DictConfig, arch: str) -> int:
    """``detect.iters`` of the protocol ``arch`` trains with (its config and common overrides)."""
    s = plan.scale
    cfg = config.compose([f"detect={s.detect.configs[arch]}", *s.detect.common])
    return int(cfg.detect.iters)


def curve_iters(multiple: float, iters: int) -> int:
    return max(1, round(multiple * iters))


def curve_steps(plan: DictConfig, steps: Sequence[Step]) -> list[Step]:
    """The learning curve's runs: each ``curve.runs`` setting at ``curve.multiples`` of its
    schedule, per curve seed (none given: per seed of its table runs); the table's own runs
    are the multiple 1 (not repeated).

    Each is its own run with its own cosine schedule (not a checkpoint of a longer run), so
    a point says where that schedule length ends, which is what "converged" is about.
    """
    s = plan.scale
    by_name = {r.name: r for r in s.detect.runs}
    out = []
    for name in s.curve.runs:
        iters = schedule_length(plan, by_name[name].arch)
        base = {st.seed: st for st in steps if st.setting == name}
        for m in s.curve.multiples:
            if m == 1:
                continue
            n = curve_iters(m, iters)
            for seed in s.curve.seeds or sorted(base):
                like = base.get(seed)
                if like is None:
                    raise InputError(
                        f"scale.curve.seeds: {name} has no seed {seed} to extend "
                        f"(its seeds: {sorted(base)})"
                    )
                out.append(
                    Step(
                        f"{name}-x{m:g}-s{seed}",
                        ["detect", "train"],
                        overrides=[*like.overrides[:-1], f"detect.iters={n}", f"seed={seed}"],
                        resumable=True,
                        nproc=like.nproc,
                        title=f"{like.title.rsplit(', seed', 1)[0]}, {n} steps ({m:g}x), seed {seed}",
                        setting=f"{name}-x{m:g}",
                        seed=int(seed),
                        part="curves",
                        run=str(name),
                        after=like.after,
                    )
                )
    return out


def matched_preset(root: Path, scale: float) -> Path:
    """The params preset ``huberkl noise`` read off the sweep set of ``scale`` (paper reading)."""
    return root / f"noise-{scale:g}" / "params" / "matched.yaml"


def _times(value: str, m: float) -> str:
    from fractions import Fraction

    return str(Fraction(value) * Fraction(str(m)))


def alpha_only(name: str, matched: dict) -> list[str]:
    """``params=NAME`` with only α changed, so that its label noise α·σ matches the measured
    noise the matched preset encodes (α·σ per coordinate); one α per stage, the geometric
    mean over the coordinates of measured/σ (3 significant figures), since a stage has one α."""
    from fractions import Fraction

    from huberkl.noise.settings import to_fraction
    from huberkl.params import COORDS, load_preset

    preset = load_preset(name)
    out = [f"params={name}"]
    for stage, sp in matched["stages"].items():
        a = Fraction(str(sp["alpha"]))
        mine = preset.stage(stage).sigma
        ratios = [float(a * Fraction(str(sp["sigma"][c])) / Fraction(mine[c])) for c in COORDS]
        alpha = math.prod(ratios) ** (1 / len(ratios))
        out.append(f"params.stages.{stage}.alpha={to_fraction(alpha)}")
    return out


def sweep_variants(plan: DictConfig, preset: dict) -> list[tuple[str, list[str]]]:
    """``(variant, params overrides)`` on top of the matched preset: α times each multiple
    (0: an L1 loss); the fixed presets (``params=NAME``) as they are; and the ``alpha_only``
    presets with their α matched (:func:`alpha_only`)."""
    out = []
    for m in plan.scale.sweep.alphas:
        name = "l1" if m == 0 else ("matched" if m == 1 else f"alpha-x{m:g}")
        extra = []
        for stage, sp in preset["stages"].items():
            if m == 0:
                extra += [f"params.stages.{stage}.loss=l1", f"params.stages.{stage}.alpha=0"]
            elif m != 1:
                extra.append(f"params.stages.{stage}.alpha={_times(str(sp['alpha']), m)}")
        out.append((name, extra))
    return out


ALPHA_ONLY = "-alpha"  # variant name suffix of a preset trained with only its α matched


def sweep_steps(plan: DictConfig, root: Path, steps: Sequence[Step]) -> list[Step]:
    """The sweep's training runs; they read the presets the noise steps wrote, so they are
    built once those steps are done. A run identical to one of ``steps`` is not repeated:
    that step serves the sweep too (``serves``)."""
    import yaml

    s = plan.scale
    by_overrides = {tuple(st.overrides): st for st in steps if st.seed is not None}
    pretrained = {st.name: st for st in steps if st.part == "pretrain"}
    out = []
    for scale, name, synth in sweep_sets(plan):
        preset_file = matched_preset(root, scale)
        if not preset_file.is_file():
            continue
        preset = yaml.safe_load(preset_file.read_text(encoding="utf-8"))
        use = [f"hydra.searchpath=[file://{preset_file.parent.parent.resolve()}]", "params=matched"]
        variants = [(v, [*use, *extra]) for v, extra in sweep_variants(plan, preset)]
        variants += [(f, [f"params={f}"]) for f in s.sweep.fixed]
        variants += [(f + ALPHA_ONLY, alpha_only(f, preset)) for f in s.sweep.get("alpha_only", [])]
        for variant, params in variants:
            setting = f"sweep-{scale:g}-{variant}"
            for seed in s.sweep.seeds:
                start, after = starts_from(pretrained, root, int(seed), s.sweep.arch)
                overrides = [
                    f"detect={s.detect.configs[s.sweep.arch]}",
                    f"data.root={root / name}",
                    *synth,
                    *s.detect.common,
                    *start,
                    *params,
                    f"seed={seed}",
                ]
                same = by_overrides.get(tuple(overrides))
                if same is not None:
                    same.serves.append(setting)
                    continue
                out.append(
                    Step(
                        f"{setting}-s{seed}",
                        ["detect", "train"],
                        overrides=overrides,
                        resumable=True,
                        title=f"Sweep: noise {scale:g}, {variant}, seed {seed}",
                        setting=setting,
                        seed=int(seed),
                        part="sweep",
                        scale=scale,
                        after=after,
                    )
                )
    return out


def all_steps(plan: DictConfig, root: Path) -> list[Step]:
    """Every step of the plan whose inputs exist now (the sweep's runs need its noise steps)."""
    steps = build_steps(plan, root)
    return [*steps, *sweep_steps(plan, root, steps)]
