"""One prepared GPU check (run by hand on a CUDA machine; not part of `make bench`).

    python benchmarks/gpu_check.py OUT_DIR

Times the default toy grid (exact solver, then both solvers) and a short detection
training run with mixed precision on CUDA, against the same work on the CPU where that
is cheap, and writes ``gpu_check.json`` to OUT_DIR. Uses the library API only (no CLI),
so it runs where typer is older than ours.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(out: Path) -> None:
    import torch

    from huberkl.config import compose
    from huberkl.detect import engine
    from huberkl.detect.synth import synthesize
    from huberkl.toy.run import run_toy

    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/gpu_check")  # bulky artefacts stay on the machine; the JSON comes back
    res: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}

    def toy(name: str, overrides: list[str]) -> None:
        cfg = compose(["toy.device=cuda", *overrides])
        t0 = time.perf_counter()
        summary = run_toy(cfg, work / name, progress=False)
        torch.cuda.synchronize()
        res[name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "peak_cuda_MiB": round(torch.cuda.max_memory_allocated() / 2**20),
        }
        res[name]["fit"] = summary.get("fit") if isinstance(summary, dict) else None
        print(name, res[name], flush=True)

    toy("toy_exact_f32", [])
    toy("toy_exact_f64", ["toy.dtype=float64"])
    toy("toy_both_f32", ["toy.solver=both"])

    data = synthesize(
        Path("/tmp/synth"),
        images=256,
        size=128,
        seed=0,
        noise="laplace",
        noise_scale=0.05,
        val_images=64,
    )
    for arch, group in (("faster_rcnn", "quick"), ("retinanet", "retinanet")):
        cfg = compose(
            [
                f"detect={group}",
                f"data.root={data['root']}",
                "detect.iters=60",
                "detect.device=cuda",
                "detect.batch_size=8",
                "detect.workers=2",
                "detect.ckpt_every=30",
                "detect.schedule.warmup_iters=5",
            ]
        )
        t0 = time.perf_counter()
        result = engine.train(cfg, work / f"detect_{arch}")
        secs = time.perf_counter() - t0
        metrics = json.loads((work / f"detect_{arch}" / "metrics.json").read_text())
        res[f"detect_{arch}"] = {
            "seconds_total": round(secs, 1),
            "iters": 60,
            "AP50": metrics.get("AP50"),
            "AP": metrics.get("AP"),
            "result": str(result)[:300],
        }
        print(arch, res[f"detect_{arch}"], flush=True)
    (out / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
