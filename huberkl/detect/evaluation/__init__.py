"""Scoring and looking at detectors: COCOeval, a checkpoint on a split or on images,
per-class pictures, and the tables of a folder of runs."""
