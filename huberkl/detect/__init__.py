"""Detectors with the paper's box-loss settings (Sections 6-7): data, models, training, scoring.

Kept import-light on purpose: import the submodules (``huberkl.detect.data``,
``huberkl.detect.synth``, ``huberkl.detect.evaluation``, ...) where they are needed.
``apply_params`` (``huberkl.detect.apply``) is loaded on first use, so importing another
submodule does not pull in torchvision.
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply_params"]


def __getattr__(name: str) -> Any:
    if name == "apply_params":
        from huberkl.detect.apply import apply_params

        return apply_params
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
