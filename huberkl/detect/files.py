"""Atomic file writes: a reader (or a run killed mid-write) never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, obj: Any, **dumps: Any) -> None:
    """``json.dumps(obj, **dumps)`` to a temporary file beside ``path``, then rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, **dumps) + "\n", encoding="utf-8")
    os.replace(tmp, path)
