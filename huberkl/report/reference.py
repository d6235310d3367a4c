"""The committed reference copy of a report (``outputs/reference/``), portable to any machine.

A small self-contained copy: Markdown, HTML, figures, tables and each step's config/run/
metrics records, with links rewritten to point inside the copy and no absolute path of
the machine that made it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huberkl.report.files import link
from huberkl.report.render import write_html

# The records of a step that the copy keeps (each under 2 MB).
KEEP = (
    "config.yaml",
    "run.json",
    "metrics.json",
    "stdout.txt",
    ".done.json",
    "fit.csv",
    "optimal.csv",
    "summary.json",
    "result.json",  # huberkl noise: the measured label noise
    "params/matched.yaml",  # huberkl noise: the settings read off it
)


def portable(text: str, cwd: str | None = None) -> str:
    """``text`` with the absolute folder it was made in made relative, so that a committed
    record names no path of the machine that made it (``/work/x/outputs`` -> ``outputs``)."""
    cwd = (cwd or os.getcwd()).rstrip("/")
    return text.replace(f"file://{cwd}/", "file://").replace(cwd + "/", "").replace(cwd, ".")


def _portable_run(text: str) -> str:
    """A ``run.json`` without the machine's paths: no ``cwd``, ``argv[0]`` as the command."""
    info = json.loads(text)
    info.pop("cwd", None)
    if info.get("argv"):
        info["argv"] = ["huberkl", *info["argv"][1:]]
    return portable(json.dumps(info, indent=2) + "\n")


def _keep_start(step: Path, target: Path) -> None:
    """What the runs start from: a backbone pretraining's ``backbone.*`` tensors as
    ``backbone.pt``, a detector pretraining's (``pretrain-<arch>-s<seed>``) whole model as
    ``detector.pt``; from the run's checkpoint, or the copy an earlier export kept."""
    import torch

    from huberkl.plan import BACKBONE, DETECTOR, START, whole_detector

    whole = whole_detector(step.name)
    file = DETECTOR if whole else BACKBONE
    if (step / file).is_file():
        state = torch.load(step / file, map_location="cpu", weights_only=True)
    elif (step / START).is_file():
        ckpt = torch.load(step / START, map_location="cpu", weights_only=False)
        model = ckpt.get("model", ckpt)
        state = {k: v for k, v in model.items() if whole or k.startswith("backbone.")}
    else:
        return
    target.mkdir(parents=True, exist_ok=True)
    torch.save(state, target / file)


def export_reference(
    report_dir: Path, root: Path, dest: Path, steps: Sequence[Any] | None = None
) -> Path:
    """A small self-contained copy of a report: Markdown, figures, tables and each step's
    config/run/metrics files, with links rewritten to point inside the copy.

    With ``steps``, a step that has no folder under ``root`` keeps its record from the
    existing copy: the reference can be built a part at a time. No record names an absolute
    path of this machine (:func:`portable`).
    """
    dest = Path(dest)
    names = {st.name for st in steps} if steps is not None else set()
    old = dest.with_name(dest.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    shutil.copytree(report_dir / "figures", dest / "figures")
    shutil.copytree(report_dir / "tables", dest / "tables")
    # Finished steps only: a run still training (no .done.json) is no record yet.
    here = {
        p.name: p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith("synth") and (p / ".done.json").is_file()
    }
    kept = {p.name: p for p in (old / "runs").glob("*") if p.name in names and p.name not in here}
    for name, step in sorted({**kept, **here}.items()):
        for file in KEEP:
            src = step / file
            if src.is_file() and src.stat().st_size < 2_000_000:
                target = dest / "runs" / name / file
                target.parent.mkdir(parents=True, exist_ok=True)
                text = src.read_text(encoding="utf-8")
                target.write_text(
                    _portable_run(text) if file == "run.json" else portable(text), encoding="utf-8"
                )
        if step.name.startswith("pretrain-"):
            _keep_start(step, dest / "runs" / name)
    if old.exists():
        shutil.rmtree(old)
    prefix = link(root, report_dir) + "/"
    text = (report_dir / "report.md").read_text(encoding="utf-8").replace(f"]({prefix}", "](runs/")
    (dest / "report.md").write_text(portable(text), encoding="utf-8")
    write_html(portable(text), dest / "report.html", dest)
    return dest / "report.md"
