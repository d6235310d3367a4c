"""Shared fixtures and test hygiene (helpers to import are in ``tests/helpers/``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _restore_logging():
    """Hydra's ``@hydra.main`` (the multirun tests) points the root logger at the stream
    pytest captured for that test; later tests would log into the closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A clean 64-px synthetic set, 8 train and 4 val images, made once per test module
    (the detection tests train the tiny model of ``tests/helpers/detect_tiny.py`` on it)."""
    from huberkl.detect.data.synth import synthesize
    from huberkl.schema import SynthSchema

    root = tmp_path_factory.mktemp("synth")
    synthesize(
        root, SynthSchema(images=8, size=64, seed=0, noise="none", noise_scale=0.0, val_images=4)
    )
    return root
