"""Checkpoints that are never half-written and refuse to load into the wrong model.

A checkpoint is one ``torch.save`` of a plain dict: model, optimiser, scheduler and
grad-scaler states, the RNG states, the data-order position, the iteration and the run's
whole config (nanoGPT: the config travels with the weights). Saving writes a temporary
file in the same folder and renames it over the target, so a crash or a second Ctrl-C
leaves the previous checkpoint intact. Loading checks the stored architecture against
the model about to receive the weights and says, in one line, what differs
(:func:`build_from_checkpoint`: the model of a checkpoint, for ``detect evaluate`` and
``detect predict``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from huberkl.errors import InputError

if TYPE_CHECKING:
    from huberkl.params import Preset

# The model settings whose change makes the weights meaningless (shapes or box coding).
ARCH_KEYS = (
    "arch",
    "backbone",
    "fpn_channels",
    "tiny_widths",
    "tiny_depth",
    "anchor_sizes",
    "aspect_ratios",
    "retinanet_head_norm",
    "representation_size",
    "target_encoding",
)


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(dict(state), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU; a missing or unreadable file is an InputError.

    ``mmap=True`` maps the tensors instead of reading them (to look at the config only).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"checkpoint {path} is not a readable huberkl checkpoint: {first}"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "arch" not in state:
        raise InputError(f"checkpoint {path} is not a huberkl checkpoint (no model/arch entries)")
    return state


def architecture(model: torch.nn.Module, num_classes: int) -> dict[str, Any]:
    """The part of the model description that the weights depend on (plain, comparable values).

    Read from ``model.huberkl_config`` (the ``ModelConfig`` that built it).
    """
    import dataclasses

    cfg = getattr(model, "huberkl_config", None)
    desc = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
    arch = {k: _plain(desc[k]) for k in ARCH_KEYS if k in desc}
    arch["num_classes"] = int(num_classes)
    return arch


def _plain(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def check_architecture(
    path: str | Path, stored: Mapping[str, Any], wanted: Mapping[str, Any]
) -> None:
    """Raise a one-line InputError naming the file and, as overrides, what it was trained with."""
    diff = []
    for k in sorted(set(stored) | set(wanted)):
        if stored.get(k) == wanted.get(k):
            continue
        if k == "num_classes":
            diff.append(f"{stored.get(k)} classes (this dataset: {wanted.get(k)})")
        else:
            diff.append(
                f"detect.model.{k}={_override(stored.get(k))} (config: {_override(wanted.get(k))})"
            )
    if diff:
        raise InputError(f"checkpoint {path} is from another architecture: {'; '.join(diff)}")


def _override(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, list):
        return "[" + ",".join(_override(x) for x in v) + "]"
    return str(v)


def load_model_state(model: torch.nn.Module, state: Mapping[str, Any], path: str | Path) -> None:
    """``load_state_dict`` with a one-line error instead of torch's multi-line report."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise InputError(f"checkpoint {path} does not fit the model: {detail}") from None


def build_from_checkpoint(
    model_cfg: Mapping[str, Any],
    params: Preset,
    num_classes: int,
    state: Mapping[str, Any],
    path: str | Path,
) -> torch.nn.Module:
    """A checkpoint's model: built without the ``weights``/``backbone_*`` files (the
    checkpoint holds every tensor, and they need not be on this machine), checked against the
    checkpoint's architecture (an InputError naming ``path`` otherwise), then loaded."""
    from huberkl.detect.model.detectors import build_model

    cfg = {**model_cfg, "weights": None, "backbone_weights": None, "backbone_init": None}
    model = build_model(cfg, params, num_classes)
    check_architecture(path, state["arch"], architecture(model, num_classes))
    load_model_state(model, state, path)
    return model
