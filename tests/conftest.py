"""Shared test hygiene."""

from __future__ import annotations

import logging

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
