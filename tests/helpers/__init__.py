"""What several test modules share: the repository's root, running ``huberkl`` in-process
(:mod:`.cli`), the tiny detector every detection test trains (:mod:`.detect_tiny`) and the
data-parallel stand-in launched through torchrun (:mod:`.ddp_regressor`). Fixtures are in
``tests/conftest.py``."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
