"""The paper's own numbers (Tables 3-6, COCO mAP in %), printed beside ours in the report."""

from __future__ import annotations

from huberkl.params import COORDS

# (AP50, AP75, AP) per setting; "-" in the paper is None.
TABLE3_FRCNN = {
    "baseline [18]": (41.5, None, 21.2),
    "publication": (42.8, 18.7, 21.0),
    "implementation": (44.7, 23.1, 23.8),
    "exp-a": (44.7, 24.0, 24.2),
    "exp-b": (44.2, 25.0, 24.6),
    "exp-c": (44.6, 24.9, 24.7),
}
TABLE4_RETINANET = {
    "implementation": (60.1, 42.9, 40.4),
    "exp-a": (60.6, 43.5, 40.8),
    "exp-b": (58.9, 42.3, 39.8),
}
TABLE5_TARGETS = {
    "log (original)": (44.7, 23.1, 23.8),
    "linear (approximation)": (44.6, 23.0, 23.7),
}
TABLE6_LOSS = {"H_α": (44.7, 23.1, 23.8), "D_{α/2,1/α}": (44.7, 23.3, 23.8)}

# How the report names each setting (the run names less their architecture).
LABELS = {
    "publication": "Publication",
    "implementation": "Implementation",
    "exp-a": "Experiment A",
    "exp-b": "Experiment B",
    "exp-c": "Experiment C",
    "exp-a-balanced": "Exp. A, proposal λ/σ of the Implementation on x, y (control)",
    "linear": "linear targets",
    "kl": "D_{α/2,1/α}",
}
# RetinaNet has one box stage (the config's ``proposal`` stage): its control has no "proposal".
LABELS_RETINANET = {
    **LABELS,
    "exp-a-balanced": "Exp. A, λ/σ of the Implementation on x, y (control)",
}

# Column order of Tables 1 and 2.
TABLE1 = ("publication", "implementation", "exp-a", "exp-b", "exp-c")


def _cells(x: str, y: str, w: str, h: str) -> dict[str, str]:
    return dict(zip(COORDS, (x, y, w, h), strict=True))


def _both(label: str, pred: str, lw: str | None = None, pw: str | None = None) -> dict:
    """A stage whose x/y use ``label``/``pred`` and w/h use ``lw``/``pw`` (same if None)."""
    lw, pw = lw or label, pw or pred
    return {
        "label": _cells(label, label.replace("wa", "ha"), lw, lw.replace("wa", "ha")),
        "prediction": _cells(pred, pred.replace("wa", "ha"), pw, pw.replace("wa", "ha")),
    }


# Table 2 as printed in the paper (anchor-unit notation), typed from the paper's text.
TABLE2 = {
    "publication": {"proposal": _both("wa", "wa/10"), "detection": _both("wa", "wa/10")},
    "implementation": {
        "proposal": _both("wa/9", "wa"),
        "detection": _both("wa/10", "wa/10", "wa/5", "wa/5"),
    },
    "exp-a": {
        "proposal": _both("wa/20", "wa/5", "wa/10", "2wa/5"),
        "detection": _both("wa/20", "wa/10", "wa/10", "wa/5"),
    },
    "exp-b": {
        "proposal": _both("wa/20", "wa/10", "wa/10", "wa/5"),
        "detection": _both("wa/20", "wa/20", "wa/10", "wa/10"),
    },
    "exp-c": {
        "proposal": _both("wa/20", "wa/5", "wa/10", "2wa/5"),
        "detection": _both("wa/20", "wa/20", "wa/10", "wa/10"),
    },
}


def differences(protocol: str) -> str:
    """How this run differs from the paper; ``protocol`` says what was trained, read from
    the run records by :func:`huberkl.report.detection.protocol_text`."""
    return (
        "## How this differs from the paper\n\n"
        "Detection, as the run records describe it:\n\n"
        + (protocol or "- _No detection run has finished._\n")
        + """- **The paper** trained VGG-16 (Faster R-CNN) and ResNet-101 (RetinaNet) backbones
  pretrained on ImageNet, on COCO 2014/2017, for 490k/90k SGD steps on GPUs, one run each.
- **Toy problem.** Same set-up as Section 5; the polynomial is fitted in a Legendre basis
  on [−δ, δ] (it spans the same functions as the monomials, better conditioned), by an
  exact IRLS solver and by the paper's gradient descent, over several seeds.
- **Absolute mAP** on synthetic shapes is not comparable with COCO mAP; compare the
  differences between settings (with their intervals), not the numbers, with the paper's.
"""
    )


UNTESTABLE = [
    (
        "Absolute COCO mAP of Tables 3-6",
        "needs COCO and GPUs: `make reproduce SCALE=full COCO=/path/to/coco`",
    ),
    (
        "The effects hold for VGG-16 / ResNet-101 backbones at COCO scale",
        "small from-scratch backbones on CPU only",
    ),
]

RERUN = """## Rerunning

Every step above is one `huberkl` command; its resolved `config.yaml` and `run.json` (seed,
command line, versions) sit in its folder. `make reproduce SCALE={scale}` reruns only the
steps whose config changed; an interrupted training step resumes from its last checkpoint.
"""

SMOKE_WARNING = """> **Smoke run.** Every step ran at toy size (a few training steps, a tiny toy grid) to
> check the pipeline; its numbers and verdicts mean nothing. `make reproduce` gives the
> real CPU results.
"""
