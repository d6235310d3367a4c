"""`huberkl interpret --preset all` must feel instant: under 0.5 s wall.

Each command runs as a fresh process (what a user waits for), median of REPEATS runs after
one warm-up, all in this run: the candidate, the bare interpreter (``python -c pass``: the
floor nothing can beat) and ``python -c "import torch"`` (what the command would cost if it
imported the maths). ``ok`` is the absolute budget; ratios say how far from each reference.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 7
BUDGET_S = 0.5


def _huberkl() -> list[str]:
    script = Path(sys.executable).with_name("huberkl")
    if script.exists():
        return [str(script)]
    found = shutil.which("huberkl")
    return [found] if found else [sys.executable, "-m", "huberkl.cli"]


def wall(cmd: list[str], repeats: int = REPEATS) -> tuple[float, list[float]]:
    """Median wall time of ``cmd`` run as a new process (output discarded)."""
    env = {**os.environ, "COLUMNS": "200"}
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)  # warm the file cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _fmt(times: list[float]) -> str:
    return f"min {min(times):.3f} / max {max(times):.3f} s"


def run() -> list[dict]:
    cand, cand_t = wall([*_huberkl(), "interpret", "--preset", "all"])
    bare, bare_t = wall([sys.executable, "-c", "pass"])
    torch_, torch_t = wall([sys.executable, "-c", "import torch"], repeats=3)
    cli, cli_t = wall([*_huberkl(), "--version"])
    ok = cand < BUDGET_S
    return [
        {
            "benchmark": "interpret --preset all (wall, fresh process)",
            "baseline": 'python -c "import torch"',
            "candidate": "huberkl interpret --preset all",
            "ratio": torch_ / cand,
            "target": f"< {BUDGET_S} s absolute",
            "ok": ok,
            "detail": (
                f"candidate median {cand:.3f} s ({_fmt(cand_t)}, n={REPEATS}); "
                f"import torch {torch_:.3f} s; budget {BUDGET_S} s"
            ),
        },
        {
            "benchmark": "interpret overhead over a bare interpreter",
            "baseline": "python -c pass",
            "candidate": "huberkl interpret --preset all",
            "ratio": bare / cand,
            "target": "info",
            "ok": None,
            "detail": (
                f"python -c pass {bare:.3f} s ({_fmt(bare_t)}); "
                f"interpret adds {cand - bare:.3f} s; "
                f"huberkl --version (CLI startup, all command modules) {cli:.3f} s ({_fmt(cli_t)})"
            ),
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
