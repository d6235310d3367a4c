"""Detectors with the paper's box-loss settings (Sections 6-7), one folder per stage.

``huberkl detect`` (:mod:`huberkl.commands.detect`) composes the run's config
(``conf/detect``, ``conf/data``, ``conf/params``), then:

- ``data/``: ``datasets`` (any COCO-format split), ``synth`` (the synthetic shapes set),
  ``sets`` (which set a run reads; the built-in one is made if missing), ``loaders``
  (order and augmentation that survive a resume);
- ``model/``: ``boxloss`` (loss and box coder of a stage's settings), ``heads``
  (torchvision's stages using them), ``apply`` (``apply_params`` on any torchvision
  detector), ``backbones``, ``weights`` (every state-dict file and torchvision weights by
  name), ``detectors`` (``build_model``: Faster R-CNN and RetinaNet from ``detect.model``);
- ``training/``: ``train`` (the run top to bottom, as torchvision's references'
  ``train.py``), ``optim``, ``loop`` (their ``engine.py``), ``logger``, ``checkpoint``
  (atomic files; a checkpoint's model), ``resume`` (continue exactly), ``runs`` (what a
  run folder holds and what may change on resume);
- ``evaluation/``: ``coco_eval`` (COCOeval on detections), ``evaluate`` (a model or a
  checkpoint on a split), ``pictures`` (per-class AP, drawn boxes), ``predict`` (a
  checkpoint on images), ``summarize`` (Tables 3 and 4 from a folder of runs).

``dist`` (torchrun's process group, samplers, threads) and ``files`` (atomic JSON writes)
serve every stage.

Kept import-light on purpose: import the submodules where they are needed.
``apply_params`` (``huberkl.detect.model.apply``) is loaded on first use, so
``from huberkl.detect import apply_params`` works and importing another submodule does
not pull in torchvision.
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply_params"]


def __getattr__(name: str) -> Any:
    if name == "apply_params":
        from huberkl.detect.model.apply import apply_params

        return apply_params
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
