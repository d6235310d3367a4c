"""Detectors with the paper's box-loss settings (Sections 6-7): data, models, training, scoring.

Kept import-light on purpose: import the submodules (``huberkl.detect.data``,
``huberkl.detect.synth``, ``huberkl.detect.evaluation``, ...) where they are needed.
"""
