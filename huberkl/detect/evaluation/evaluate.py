"""Score a detector on a split: training's final evaluation and ``huberkl detect evaluate``.

:func:`evaluate_model` runs a model over all of a dataset (every rank its share,
:func:`huberkl.detect.data.loaders.eval_loader`) and scores it with COCOeval
(:func:`.coco_eval.evaluate`); rank 0 writes ``metrics.json``, ``detections.json`` and the
per-class report of :mod:`.pictures`. :func:`evaluate_checkpoint` first rebuilds a
checkpoint's model (:func:`huberkl.detect.training.checkpoint.build_from_checkpoint`; a
checkpoint of another architecture is refused) on the data its config names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from huberkl.detect import dist
from huberkl.detect.data import sets
from huberkl.detect.data.datasets import load_split
from huberkl.detect.data.loaders import eval_loader
from huberkl.detect.evaluation import coco_eval
from huberkl.detect.model.detectors import model_config, preset_of
from huberkl.detect.training import checkpoint as ckpt


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def evaluate_model(
    model: torch.nn.Module,
    dataset,
    info: dist.DistInfo,
    out_dir: Path | None,
    batch_size: int = 8,
    workers: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """COCO bbox metrics of ``model`` on all of ``dataset`` (:func:`.coco_eval.evaluate`).

    Rank 0 writes ``metrics.json``, ``detections.json``, ``class_ap.csv`` and ``pr.png`` to
    ``out_dir``; other ranks return ``{}``.
    """
    from huberkl.detect.evaluation.pictures import write_class_report

    def class_report(ev, rows: list[dict], img_ids: list[int], out: Path) -> None:
        write_class_report(dataset.coco, rows, img_ids, out, ev=ev)

    return coco_eval.evaluate(
        unwrap(model),
        eval_loader(dataset, info, batch_size, workers),
        dataset.coco,
        info.device,
        dataset.label_to_cat_id,
        out_dir,
        img_ids=dataset.coco.getImgIds(),
        extra=extra,
        info=info,
        report=class_report,
    )


def evaluate_checkpoint(
    cfg: DictConfig, checkpoint: str | Path, split: str, out_dir: Path | None
) -> dict[str, float]:
    """Score a checkpoint on ``split``; a checkpoint from another architecture is an InputError."""
    d = cfg.detect
    info = dist.init(d.device)
    try:
        with dist.threads(d.get("threads")):
            state = ckpt.read_checkpoint(checkpoint)
            if info.is_main:  # the set on disk (the built-in one is made if it is missing)
                sets.ensure_dataset(cfg.data)
            dist.barrier()  # the other ranks read the set rank 0 made
            dataset = load_split(cfg.data, split, train=False)
            model = ckpt.build_from_checkpoint(
                model_config(cfg), preset_of(cfg), int(dataset.num_classes), state, checkpoint
            )
            model.to(info.device)
            extra = {"iteration": int(state["iteration"]), "split": split}
            extra["checkpoint"] = str(checkpoint)
            metrics = evaluate_model(
                model,
                dataset,
                info,
                out_dir if info.is_main else None,
                batch_size=d.eval_batch_size,
                workers=d.workers,
                extra=extra,
            )
            dist.barrier()  # ranks leave together (see training.train._train)
            return metrics
    finally:
        dist.destroy()
