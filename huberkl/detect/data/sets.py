"""Which data a detection run reads: the set on disk, never a regenerated one.

``huberkl data synth --out DIR --noise laplace`` followed by ``huberkl detect data.root=DIR``
must train on the noisy set in DIR, whatever ``data.synth`` says in the config. So the
trainer synthesises the built-in set only into a folder that holds no set; when the folder
holds one, it is read as it is, and if its recorded arguments (the annotation file's
``info``) differ from ``data.synth``, one line says so and which noise the set holds. What
was read is returned for ``run.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from huberkl.errors import InputError

# What a folder may hold and still be synthesised into: an interrupted synthesis, or the
# config.yaml / run.json that `huberkl data synth` writes beside the set.
_SYNTH_ENTRIES = {"images", "annotations", "config.yaml", "run.json"}


def read_info(ann_file: str | Path) -> dict[str, Any]:
    """The ``info`` object of a COCO annotation file ({} when it has none)."""
    path = Path(ann_file)
    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh).get("info", {})
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise InputError(f"{path}: not a readable COCO annotation file ({exc})") from None
    return info if isinstance(info, dict) else {}


def noise_of(info: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``info`` entry about annotation noise (its keys start with ``noise``)."""
    return {k: v for k, v in info.items() if str(k).startswith("noise")}


def _fmt(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def describe_noise(info: Mapping[str, Any]) -> str:
    """``noise=laplace noise_scale=0.05`` (or ``no noise recorded``)."""
    noise = noise_of(info)
    return " ".join(f"{k}={_fmt(v)}" for k, v in noise.items()) or "no noise recorded"


def brief_noise(info: Mapping[str, Any]) -> str:
    """``noise=laplace noise_scale=0.05``, ``noise=laplace targets 0.05/0.05/0.1/0.1``: the
    set's noise in a few words for the run's ``data:`` line (``info`` holds the rest)."""
    noise = info.get("noise")
    if noise is None:
        return "no noise recorded"
    if noise == "none":
        return "noise=none"
    scales = info.get("noise_scales")
    if info.get("noise_model") == "targets" and isinstance(scales, Mapping):
        return f"noise={noise} targets {'/'.join(f'{float(v):g}' for v in scales.values())}"
    return f"noise={noise} noise_scale={_fmt(info.get('noise_scale'))}"


def differences(info: Mapping[str, Any], synth_cfg: Mapping[str, Any]) -> dict[str, tuple]:
    """``data.synth`` keys whose value differs from what the set on disk records.

    A noise scale does not count when both say there is no noise.
    """
    clean = info.get("noise") == "none" and synth_cfg.get("noise") == "none"
    out = {}
    for key, want in synth_cfg.items():
        if key not in info or info[key] == want:
            continue
        if clean and key != "noise" and str(key).startswith("noise"):
            continue
        out[key] = (info[key], want)
    return out


def _check_empty(root: Path) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise InputError(f"data.root={root}: not a folder")
    other = sorted(p.name for p in root.iterdir() if p.name not in _SYNTH_ENTRIES)
    anns = root / "annotations"
    if anns.is_dir():
        other += sorted(f"annotations/{p.name}" for p in anns.iterdir())
    if other:
        raise InputError(
            f"data.root={root} holds no synthetic set (no annotations/instances_train.json) but "
            f"is not empty ({', '.join(other[:3])}); give a new or empty folder, or data=coco "
            "for a COCO-format set"
        )


def check_new_set(root: str | Path, force: bool = False) -> None:
    """Refuse to write a set where one is already (``huberkl data synth`` without ``--force``).

    A user's noisy set is data: overwriting it by re-running a command with other arguments
    loses it. An incomplete set (``images/`` without annotations, from an interrupted run
    of an older version) is refused too, so that stale images never end up beside a new
    set. Files that are not part of a set (``stdout.txt`` of a reproduction step) are left
    alone and do not count.
    """
    from huberkl.detect.data.synth import layout

    paths = layout(root)
    held = [p for p in (paths["train_ann"], paths["val_ann"]) if p.is_file()]
    part = [n for n in ("images", "annotations") if (paths["root"] / n).exists()]
    if part and not held and not force:
        raise InputError(
            f"--out {paths['root']} holds an incomplete set ({'/, '.join(part)}/ but no "
            "annotations/instances_train.json, as an interrupted run left it); give a new "
            "folder, or --force to replace it"
        )
    if held and not force:
        info = read_info(held[0])
        brief = {k: info[k] for k in ("noise_model", "noise", "noise_scale") if k in info}
        if info.get("noise_model") == "targets":
            brief = {**brief, "noise_scales": info.get("noise_scales")}
            brief.pop("noise_scale", None)
        raise InputError(
            f"--out {paths['root']} already holds a set ({describe_noise(brief)}); "
            "give a new folder, or --force to overwrite it"
        )


def ensure_dataset(data_cfg: DictConfig, say: Callable[[str], None] | None = None) -> dict:
    """Make sure the data of ``data_cfg`` is on disk; return what will be read (for run.json).

    Only the built-in set is ever written, and only into a folder that holds no set.
    """
    record: dict[str, Any] = {
        "name": data_cfg.get("name"),
        "root": str(data_cfg.get("root")),
        "train_ann": str(data_cfg.train_ann),
        "val_ann": str(data_cfg.val_ann),
    }
    if data_cfg.get("name") != "synth":
        return record
    synth_cfg = OmegaConf.to_container(data_cfg.synth, resolve=True)
    train_ann = Path(data_cfg.train_ann)
    if train_ann.is_file():
        info = read_info(train_ann)
        diff = differences(info, synth_cfg)
        record |= {"source": "on disk", "info": info, "differs_from_config": sorted(diff)}
        if say is not None:  # one short line; run.json keeps the whole info (record above)
            line = f"data: {data_cfg.root} (synthetic, {brief_noise(info)})"
            if diff:  # the noise keys first; the full list is in run.json
                keys = sorted(diff, key=lambda k: not str(k).startswith("noise"))
                more = f", +{len(keys) - 3} more" if len(keys) > 3 else ""
                line += f"; trains on it (data.synth differs: {', '.join(keys[:3])}{more})"
            say(line)
        return record
    root = Path(data_cfg.root)
    _check_empty(root)
    from huberkl.detect.data.synth import synthesize
    from huberkl.schema import SynthSchema

    settings = SynthSchema.from_mapping(synth_cfg)  # checked before anything is written
    if say is not None:
        say(f"data: synthesising the shapes set into {root}")
    synthesize(root, settings)
    info = read_info(train_ann)
    return record | {"source": "synthesised", "info": info, "differs_from_config": []}
