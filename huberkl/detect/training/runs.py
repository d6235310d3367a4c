"""What a run folder holds, and what may change when a run continues.

Resuming means "continue this run", so it starts from the run's own config, kept in its
checkpoint (:func:`resume_config`): ``huberkl detect --out RUN detect.resume=true`` needs no
override typed again. The settings that define what is trained (the seed, the
``params`` box-loss preset, the data, the model, the optimiser, the batch) must be those the
checkpoint was trained with, or the resume is refused naming the keys. The length and shape
of the learning-rate schedule (``detect.iters``, ``detect.schedule.*``) may change and are
honoured: from the checkpoint's iteration on, the learning rate is the new schedule's.
Everything else (checkpoint interval, evaluation, loader workers, threads, device) only says
how the run is carried out. A folder that already holds a run is never trained into again
without ``detect.resume``, so its ``losses.csv`` and checkpoint are never truncated.

The checkpoint keeps the run's config twice: resolved (``config``, compared on resume) and
as composed, with its interpolations (``config_source``), so that ``huberkl detect evaluate
--checkpoint`` rebuilds the run's config and a ``data.root=...`` override moves every path
below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from huberkl.errors import InputError

CHECKPOINT = "checkpoint.pt"
LOSSES_CSV = "losses.csv"
# Keys (or key prefixes) whose change on resume would train another run: refused.
RUN_DEFINING = (
    "seed",
    "params",
    "data",
    "detect.model",
    "detect.optim",
    "detect.batch_size",
    "detect.hflip",
    "detect.clip_grad_norm",
    "detect.amp",
    "detect.sync_bn",
)
# Keys whose change on resume is honoured by recomputing the learning-rate schedule.
SCHEDULE = ("detect.iters", "detect.schedule")
IGNORED = ("detect.resume",)


def under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            flat.update(flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every setting that differs (``detect.resume`` aside)."""
    a, b = flatten(old), flatten(new)
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and not under(k, IGNORED)
    }


def _fmt(v: Any) -> str:
    return "null" if v is None else str(v)


def describe(diff: Mapping[str, tuple[Any, Any]], limit: int | None = None) -> str:
    """``key: old -> new; ...``; past ``limit`` keys, ``and N more`` (a message stays short)."""
    items = list(diff.items())
    shown = items if limit is None else items[:limit]
    text = "; ".join(f"{k}: {_fmt(a)} -> {_fmt(b)}" for k, (a, b) in shown)
    if len(items) > len(shown):
        text += f"; and {len(items) - len(shown)} more"
    return text


def holds_run(out_dir: Path) -> bool:
    """True if ``out_dir`` has a checkpoint or a loss log that a new run would overwrite."""
    return (out_dir / CHECKPOINT).is_file() or (out_dir / LOSSES_CSV).is_file()


def find_resume(resume: Any, out_dir: Path) -> Path | None:
    """``detect.resume``: false, true (this run's folder) or a checkpoint file or folder."""
    if resume is None or resume is False or str(resume).lower() in ("false", "no", "0", ""):
        return None
    if resume is True or str(resume).lower() in ("true", "yes", "1"):
        path = Path(out_dir) / CHECKPOINT
    else:
        path = Path(resume)
        if path.is_dir():
            path = path / CHECKPOINT
    if not path.is_file():
        raise InputError(
            f"detect.resume: no checkpoint at {path}; a run stopped before its first "
            "checkpoint starts again without detect.resume"
        )
    return path


def check_continuation(
    stored: Mapping[str, Any], new: Mapping[str, Any], path: Path
) -> dict[str, tuple[Any, Any]]:
    """Raise an InputError naming the run-defining keys that changed; return the other changes."""
    diff = changes(stored, new)
    refused = {k: v for k, v in diff.items() if under(k, RUN_DEFINING)}
    if refused:
        raise InputError(
            f"detect.resume: {path} was trained with other settings; a resumed run must keep "
            f"them ({describe(refused, limit=4)}); start a new run with another --out instead"
        )
    return diff


def check_out_dir(cfg: DictConfig, out_dir: Path) -> Path | None:
    """The checkpoint to resume from, after checking that continuing it is allowed.

    Raises an InputError when ``out_dir`` holds a run and ``detect.resume`` is off (the run
    would be overwritten), or when a run-defining setting differs from the checkpoint's.
    """
    from huberkl.detect.training import checkpoint as ckpt

    path = find_resume(cfg.detect.get("resume"), out_dir)
    if path is None:
        if holds_run(out_dir):
            raise InputError(
                f"{out_dir} already holds a run ({CHECKPOINT} or {LOSSES_CSV}); continue it with "
                "detect.resume=true or choose another --out"
            )
        return None
    state = ckpt.read_checkpoint(path, mmap=True)
    check_continuation(state.get("config", {}), OmegaConf.to_container(cfg, resolve=True), path)
    return path


def resume_config(cfg: DictConfig, out_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The config a resumed run continues with: its checkpoint's own, ``overrides`` on top.

    So ``huberkl detect --out RUN detect.resume=true``, as a stopped run prints it, continues
    RUN as it was started, without its overrides typed again. Overrides given with it may
    change the schedule (``detect.iters``, ``detect.schedule.*``: honoured) and how the run
    is carried out (threads, workers, device, checkpoints, evaluation); a run-defining one
    that differs from the run's is refused, naming only the keys it changed. Without
    ``detect.resume``, or for a checkpoint that holds no config, ``cfg`` is returned as is.
    """
    from huberkl.detect.training import checkpoint as ckpt

    path = find_resume(cfg.detect.get("resume"), out_dir)
    if path is None:
        return cfg
    state = ckpt.read_checkpoint(path, mmap=True)
    if not (state.get("config_source") or state.get("config")):
        return cfg  # an old checkpoint: the overrides must say everything, as they did
    resumed = checkpoint_config(state, overrides)
    check_continuation(state.get("config", {}), OmegaConf.to_container(resumed, resolve=True), path)
    return resumed


def find_matching_run(cfg: DictConfig, root: Path) -> Path:
    """The newest run folder under ``root`` whose saved config is ``cfg`` (``detect.resume`` aside).

    For ``detect.resume=true`` without ``--out``: never continue another run's checkpoint.
    """
    want = OmegaConf.to_container(cfg, resolve=True)
    found = sorted(root.glob(f"*/{CHECKPOINT}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in found:
        saved = path.parent / "config.yaml"
        if not saved.is_file():
            continue
        have = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
        if not changes(have, want):
            return path.parent
    raise InputError(
        f"detect.resume=true: no run under {root}/ has this config ({len(found)} checkpoints "
        "checked); pass --out RUN_DIR to continue a run (detect.iters and the schedule may change)"
    )


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def checkpoint_config(state: Mapping[str, Any], overrides: Sequence[str] = ()) -> DictConfig:
    """The config a checkpoint was trained with, with Hydra ``overrides`` applied on top.

    A group override (``data=coco``) replaces that section, a key override (``data.root=X``)
    that key; values are parsed and checked by composing the overrides as Hydra does.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from huberkl import config

    source = state.get("config_source") or state.get("config")
    if not isinstance(source, Mapping) or not source:
        raise InputError("the checkpoint holds no config; give the run's overrides explicitly")
    cfg = OmegaConf.create(dict(source))
    if not overrides:
        return cfg
    composed = OmegaConf.to_container(config.compose(overrides), resolve=False)
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise InputError(f"bad override: {str(exc).strip().splitlines()[0]}") from None
    for o in parsed:
        if o.is_hydra_override():  # hydra.searchpath shaped ``composed``; it is not in a run config
            continue
        key = o.key_or_group.replace("/", ".")
        if o.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if isinstance(node, DictConfig) and leaf in node:
                del node[leaf]
            continue
        OmegaConf.update(cfg, key, _get(composed, key), merge=False, force_add=True)
    return cfg
