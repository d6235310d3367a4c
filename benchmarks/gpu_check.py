"""The prepared GPU check: one run on a CUDA machine writes ``benchmarks/results/<device>.json``.

    python benchmarks/gpu_check.py                          # CUDA machine, full sizes
    python benchmarks/gpu_check.py --only toy,gd            # a part of it
    python benchmarks/gpu_check.py --only detect --variants channels_last  # no compiling
    python benchmarks/gpu_check.py --tiny --device cpu --out DIR   # every code path, tiny

What it measures (every figure after a warm-up, so CUDA start-up is not in it):

- ``toy_grid_exact_s``: ``run_grid`` on the default ``huberkl toy`` grid (exact, float32:
  3 families × 8 scales × 31 α × 128 seeds), data draws included; and the agreement of
  its first seeds with the same seeds solved on the CPU (``toy.cpu_agreement``).
- ``gd_fit_steps_per_s``: ``solve_gd`` on a batch of fits of N = 10000, K = 8 (float32),
  and the fraction of the memory bandwidth it reaches: each step has to read the (B, N)
  residuals once for ``Aᵀψ`` and read and write them once for the update (3·N·4 bytes per
  fit·step at the least), against a device-to-device copy measured here (and the
  device's nominal peak where torch reports memory clock and bus width).
- ``frcnn_steps_per_s``, ``retinanet_steps_per_s``: training steps per second of the
  quick configs (``detect=quick``, ``detect=retinanet``) with AMP, and of the COCO
  configs' models at 800 px (``coco_frcnn_800_steps_per_s``,
  ``coco_retinanet_800_steps_per_s``); each also with ``channels_last`` weights and with
  ``torch.compile`` on the backbone, as ratios to the plain step (``detect.<name>``).
  100 timed steps by default (``--steps``): on one H200, 20 steps gave half the rate of
  100, run to run (docs/SPEED.md).

The JSON is rewritten after each part, so a run stopped by a time limit keeps what it
measured; a run of some parts (``--only``) updates those in an existing record and keeps
the others (``part_dates`` says when each was measured). ``--tiny`` shrinks every size (and compiles with the ``eager`` backend) so that
``tests/toy/test_gpu_check.py`` runs every code path on the CPU in seconds; its numbers
mean nothing and its file is named ``<device>-tiny.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

PARTS = ("toy", "gd", "detect")
# name -> (config overrides, number of classes); the quick configs train on the 5-class
# synthetic set, the COCO ones on COCO's 80 categories.
DETECT = {
    "frcnn": (["detect=quick"], 5),
    "retinanet": (["detect=retinanet"], 5),
    # random backbone weights: the step costs the same, and nothing is downloaded at run time
    "coco_frcnn_800": (["detect=coco", "++detect.model.backbone_weights=null"], 80),
    "coco_retinanet_800": (["detect=coco-retinanet", "++detect.model.backbone_weights=null"], 80),
}
TINY_DETECT = [
    "++detect.batch_size=2",
    "++detect.model.min_size=128",
    "++detect.model.max_size=128",
    "++detect.model.backbone=tiny",
    "++detect.model.fpn_channels=32",
    "++detect.model.representation_size=64",
    "++detect.model.anchor_sizes=null",
    "++detect.model.backbone_weights=null",
    "++detect.model.trainable_layers=null",
    "++detect.model.frozen_bn=false",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


# ----------------------------------------------------------------------------- toy


def check_toy(device: torch.device, tiny: bool) -> dict:
    """The default exact grid on ``device``, and its first seeds against the CPU."""
    from huberkl import config
    from huberkl.toy import grid
    from huberkl.toy.run import build_spec

    overrides = ["toy.solver=exact", *(["toy=smoke"] if tiny else [])]
    spec = build_spec(config.compose(overrides).toy)
    dtype = torch.float32
    small = build_spec(config.compose([*overrides, "toy.seeds=2"]).toy)
    grid.run_grid(small, device=device, dtype=dtype)  # warm-up: kernels, allocator
    seconds = 0.0
    res = None

    def full() -> None:
        nonlocal res
        res = grid.run_grid(spec, device=device, dtype=dtype)

    seconds = _timed(full, device)
    assert res is not None
    mine = {k: np.asarray(v) for k, v in res.columns.items()}
    cpu = grid.run_grid(small, device=torch.device("cpu"), dtype=dtype).columns
    first = np.isin(mine["seed"], small.seeds)
    obj_dev = mine["train_objective"][first].astype(float)
    obj_cpu = np.asarray(cpu["train_objective"], dtype=float)
    rmse_dev = mine["test_rmse"][first].astype(float)
    rmse_cpu = np.asarray(cpu["test_rmse"], dtype=float)
    return {
        "toy_grid_exact_s": seconds,
        "toy": {
            "fits": res.fit_counts["exact"],
            "seconds": res.seconds,
            "chunk_label_rows": res.chunks["exact"],
            "peak_memory_bytes": res.peak_bytes,
            "unconverged": int((~mine["converged"].astype(bool)).sum()),
            "cpu_agreement": {
                "seeds": len(small.seeds),
                "max_rel_objective_diff": float(np.max(np.abs(obj_dev - obj_cpu) / obj_cpu)),
                "max_abs_test_rmse_diff": float(np.max(np.abs(rmse_dev - rmse_cpu))),
            },
        },
    }


# ----------------------------------------------------------------------------- GD


def copy_bandwidth(device: torch.device, nbytes: int) -> float:
    """Bytes per second of a device-to-device copy (read + write counted)."""
    x = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    y = torch.empty_like(x)
    y.copy_(x)
    best = min(_timed(lambda: y.copy_(x), device) for _ in range(5))
    return 2 * nbytes / best


def nominal_bandwidth(device: torch.device) -> float | None:
    """The device's peak memory bandwidth from torch's properties, where it reports them."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8  # double data rate


def check_gd(device: torch.device, tiny: bool) -> dict:
    from huberkl.toy import solvers
    from huberkl.toy.data import make_seed_data

    n, fits, steps = (1000, 64, 10) if tiny else (10000, 8192, 200)
    data = make_seed_data(
        ["laplace", "logistic", "cauchy"],
        [0.5, 1.0, 2.0, 4.0],
        0,
        n=n,
        k=8,
        delta=2.0,
        theta=[6, -3, -25, 15, 20, -10],
        n_test=100,
        device=device,
    )
    design = solvers.Design.from_matrix(data.A)
    rows = torch.arange(fits, device=device) % data.Y.shape[0]
    alpha = torch.logspace(-1.5, 1.3, fits, device=device)
    lr = torch.ones(fits, device=device)
    solvers.solve_gd(design, data.Y, alpha, lr, 3, rows)  # warm-up
    best = min(
        _timed(lambda: solvers.solve_gd(design, data.Y, alpha, lr, steps, rows), device)
        for _ in range(3)
    )
    rate = fits * steps / best
    min_bytes = 3 * n * 4
    copy = copy_bandwidth(device, (8 << 20) if tiny else (2 << 30))
    nominal = nominal_bandwidth(device)
    return {
        "gd_fit_steps_per_s": rate,
        "gd": {
            "n": n,
            "k": 8,
            "fits": fits,
            "steps": steps,
            "min_bytes_per_fit_step": min_bytes,
            "copy_bandwidth_bytes_per_s": copy,
            "fraction_of_copy_bandwidth": rate * min_bytes / copy,
            "nominal_bandwidth_bytes_per_s": nominal,
            "fraction_of_nominal_bandwidth": rate * min_bytes / nominal if nominal else None,
        },
    }


# ----------------------------------------------------------------------------- detection


def _batch(n: int, size: int, classes: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, size, size, generator=g).to(device))
        xy = torch.rand(6, 2, generator=g) * size * 0.6
        wh = size * (0.1 + torch.rand(6, 2, generator=g) * 0.3)
        boxes = torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)
        labels = torch.randint(1, classes + 1, (6,), generator=g)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return images, targets


def steps_per_second(
    overrides: list[str],
    classes: int,
    device: torch.device,
    variant: str,
    warmup: int,
    steps: int,
    compile_backend: str,
) -> float:
    """Training steps per second (forward, backward, optimiser step; AMP on CUDA) of the
    model of ``overrides``, plain or with ``channels_last`` / ``torch.compile``."""
    from omegaconf import OmegaConf

    from huberkl import config
    from huberkl.detect.training import optim
    from huberkl.detect.training.train import make_model

    cfg = config.compose(overrides)
    d = cfg.detect
    torch.manual_seed(0)
    model = make_model(cfg, classes).to(device).train()
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    elif variant == "compile":
        model.backbone = torch.compile(model.backbone, backend=compile_backend)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optim.build_optimizer(params, **OmegaConf.to_container(d.optim, resolve=True))
    amp = bool(d.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images, targets = _batch(int(d.batch_size), int(d.model.min_size), classes, device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            losses = model(images, targets)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(warmup):
        step()

    def run() -> None:
        for _ in range(steps):
            step()

    return steps / _timed(run, device)


VARIANTS = ("plain", "channels_last", "compile")


def check_detect(
    device: torch.device,
    tiny: bool,
    variants: tuple[str, ...] = VARIANTS,
    save: Callable[[dict], None] | None = None,
    steps: int = 100,
) -> dict:
    """Every model's plain step first, then each other variant across the models, saving
    after each measurement: compiling is the slow part, and a run stopped by a time limit
    keeps the plain rates of all four models."""
    warmup, steps = (1, 1) if tiny else (max(5, steps // 10), steps)
    backend = "eager" if tiny else "inductor"
    out: dict[str, Any] = {"detect": {}}
    for variant in ("plain", *(v for v in variants if v != "plain")):
        for name, (overrides, classes) in DETECT.items():
            full = [*overrides, *(TINY_DETECT if tiny else [])]
            entry = out["detect"].setdefault(
                name,
                {
                    "overrides": full,
                    "amp": device.type == "cuda",
                    "steps_timed": steps,
                    "steps_per_s": {},
                    "ratio_to_plain": {},
                    "compile_backend": backend,
                    "errors": {},
                },
            )
            t0 = time.perf_counter()
            try:
                rate = steps_per_second(full, classes, device, variant, warmup, steps, backend)
            except Exception as exc:  # a variant that fails is recorded, not fatal
                if variant == "plain":
                    raise
                rate = None
                entry["errors"][variant] = f"{type(exc).__name__}: {str(exc)[:300]}"
            entry["steps_per_s"][variant] = rate
            entry.setdefault("seconds", {})[variant] = time.perf_counter() - t0
            plain = entry["steps_per_s"]["plain"]
            if variant == "plain":
                out[f"{name}_steps_per_s"] = rate
            else:
                entry["ratio_to_plain"][variant] = rate / plain if rate and plain else None
            print(f"detect {name} {variant}: {rate} steps/s", flush=True)
            if save is not None:
                save(out)
    return out


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: every code path, fast")
    parser.add_argument("--only", default=",".join(PARTS), help="comma list of toy, gd, detect")
    parser.add_argument(
        "--steps", type=int, default=100, help="timed detector steps (after max(5, steps/10))"
    )
    parser.add_argument(
        "--name", default="", help="suffix of the record's file name: <device>-<name>.json"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="detect variants besides plain: comma list of channels_last, compile",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu (with --tiny for a quick check)")
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; allowed: {', '.join(PARTS)}")
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    bad = sorted(set(variants) - set(VARIANTS))
    if bad:
        parser.error(f"unknown variant(s) {', '.join(bad)}; allowed: {', '.join(VARIANTS)}")
    name = device_name(device)
    record: dict[str, Any] = {
        "device": name,
        "torch": torch.__version__,
        # the CUDA runtime torch was built with; "none" when the check ran on the CPU
        "cuda": (torch.version.cuda or "none") if device.type == "cuda" else "none",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tiny": args.tiny,
        "threads": torch.get_num_threads(),
        "detect_steps_timed": 1 if args.tiny else args.steps,
        "toy_grid_exact_s": None,
        "gd_fit_steps_per_s": None,
        "frcnn_steps_per_s": None,
        "retinanet_steps_per_s": None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tags = [slug(args.name)] if args.name else []
    path = out / ("-".join([slug(name), *tags, *(["tiny"] if args.tiny else [])]) + ".json")
    if path.is_file() and len(parts) < len(PARTS):  # a part run keeps the other parts' figures
        old = json.loads(path.read_text(encoding="utf-8"))
        record = {**old, **{k: v for k, v in record.items() if v is not None}}

    def write() -> None:
        path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")

    def save_detect(partial: dict) -> None:
        record.update(partial)
        write()

    checks: dict[str, Callable[[], dict]] = {
        "toy": lambda: check_toy(device, args.tiny),
        "gd": lambda: check_gd(device, args.tiny),
        "detect": lambda: check_detect(device, args.tiny, variants, save_detect, args.steps),
    }
    for part in parts:
        t0 = time.perf_counter()
        record.update(checks[part]())
        record.setdefault("part_seconds", {})[part] = time.perf_counter() - t0
        record.setdefault("part_dates", {})[part] = record["date"]
        write()
        print(f"{part}: done in {record['part_seconds'][part]:.1f} s -> {path}", flush=True)
    write()
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
