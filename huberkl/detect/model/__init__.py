"""The detectors: box loss and coder per stage, torchvision's heads with them, backbones,
weights, and ``build_model``."""
