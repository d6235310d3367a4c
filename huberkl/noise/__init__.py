"""Measure the label noise of a dataset and read the box-loss settings off it (docs/NOISE.md)."""
