"""``make reproduce``: every table and figure of the paper, one cached step at a time.

    python -m huberkl.reproduce --scale cpu|smoke|full [--part PART|next|all] [--coco DIR] [--force]

Each step is one ``huberkl`` command (so the report can print the exact command that
made every number) run in its own folder ``outputs/reproduce/<scale>/<step>/``. A step
is skipped when its ``.done`` file holds the same hash of its resolved config; a
training step that was interrupted is rerun with ``detect.resume=true`` and continues
from its last checkpoint. The plan (which steps, with which overrides) is the
``conf/reproduce.yaml`` config with its ``scale`` group.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from huberkl import config
from huberkl.detect.training.runs import CHECKPOINT
from huberkl.plan import (  # noqa: F401  (re-exported: the plan's API)
    BACKBONE,
    DETECTOR,
    START,
    Step,
    all_steps,
    build_steps,
    in_part,
    load_plan,
    matched_preset,
    sweep_sets,
    sweep_steps,
    sweep_variants,
)

ROOT = config.OUTPUTS / "reproduce"
# The committed reference: its runs/<step>/ records (config, run, metrics, .done.json with
# the step's key) stand in for training runs not made here, so that a reproduction split
# into parts (``--part``) is built from the parts run so far, here or in earlier sessions.
REFERENCE = config.OUTPUTS / "reference"
RECORDS = ("config.yaml", "run.json", "metrics.json", "stdout.txt", ".done.json")


def _done_file(out: Path) -> Path:
    return out / ".done.json"


def is_done(step: Step, out: Path, key: str) -> bool:
    f = _done_file(out)
    return f.is_file() and json.loads(f.read_text(encoding="utf-8")).get("key") == key


def adopt(step: Step, out: Path, key: str, reference: Path = REFERENCE) -> bool:
    """Take a training step's committed record (same key) instead of training it again;
    a pretraining step's record carries its backbone, which the runs still to train start
    from (as ``checkpoint.pt``, the file their ``backbone_init`` names)."""
    src = reference / "runs" / step.name
    kept = next((src / f for f in (BACKBONE, DETECTOR) if (src / f).is_file()), None)
    pretrain = step.part == "pretrain" and kept is not None
    if step.seed is None and not pretrain:
        return False
    if not is_done(step, src, key) or not (src / "metrics.json").is_file():
        return False
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in RECORDS:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    if pretrain and kept is not None:
        shutil.copyfile(kept, out / START)
    return True


def run_step(step: Step, out: Path, key: str, log, echo: bool = True) -> float:
    """Run one step (resuming a half-done training step) and mark it done; returns seconds.

    ``echo=False`` keeps the step's output in its ``stdout.txt`` only (parallel steps).
    """
    argv = step.argv(out)
    started = out.exists() and any(out.iterdir())
    if started and not step.resumable:
        # A half-written non-resumable step is simply redone from scratch.
        shutil.rmtree(out)
        started = False
    key_file = out / ".key"
    same = key_file.is_file() and key_file.read_text(encoding="utf-8") == key
    if started and step.resumable and same and (out / CHECKPOINT).is_file():
        argv = [*argv, "detect.resume=true"]
    elif started and step.resumable:
        # Begun with another config, or stopped before its first checkpoint: redone from
        # scratch (detect refuses a folder holding a run, and has nothing to resume).
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key, encoding="utf-8")
    log(f"$ {' '.join(argv)}")
    t0 = time.perf_counter()
    launch = [sys.executable]
    if step.nproc > 1:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={step.nproc}"]
    cmd = [*launch, "-m", "huberkl.cli", *argv[1:]]
    # stdout is kept beside the results (interpret's JSON is its stdout), and echoed live.
    mode = "a" if "detect.resume=true" in argv else "w"
    with (out / "stdout.txt").open(mode, encoding="utf-8") as sink:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if not echo else None,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"},
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            if echo:
                sys.stdout.write(line)
        proc.wait()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"step {step.name} failed with exit code {proc.returncode}: {' '.join(argv)} (log: {out / 'stdout.txt'})"
        )
    _done_file(out).write_text(
        json.dumps(
            {"key": key, "argv": step.argv(out), "seconds": round(seconds, 1), "title": step.title},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return seconds


def _run_parallel(todo: list[tuple[Step, Path, str]], jobs: int, console) -> None:
    """Run independent training steps ``jobs`` at a time under one rich progress bar."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from huberkl.progress import progress_bar

    with (
        progress_bar("training runs", console=console) as bar,
        ThreadPoolExecutor(max_workers=jobs) as pool,
    ):
        task = bar.add_task("", total=len(todo))
        futures = {
            pool.submit(run_step, st, out, key, console.print, False): st for st, out, key in todo
        }
        failed = []
        for fut in as_completed(futures):
            st = futures[fut]
            try:
                secs = fut.result()
                console.print(f"done {st.name} ({secs / 60:.1f} min)")
            except RuntimeError as exc:
                failed.append(str(exc))
                console.print(f"[red]failed {st.name}[/]")
            bar.advance(task)
    if failed:
        raise RuntimeError(failed[0])


def train(todo: list[tuple[Step, Path, str]], jobs: int, console) -> None:
    """The training runs left: first the backbone pretraining that some of them start from
    (only those: a pretraining run whose runs are all done is not needed), then the rest."""
    needed = {st.after.name for st, _, _ in todo if st.after is not None}
    pre = [job for job in todo if job[0].part == "pretrain" and job[0].name in needed]
    runs = [job for job in todo if job[0].part != "pretrain"]
    # Seed-major: every setting's seed 0 first, so that a stopped run leaves complete
    # pairs of the first seeds rather than every seed of the first settings; within a seed
    # the longest runs first, so that no core idles while one long run finishes alone.
    runs.sort(key=lambda job: (-1 if job[0].seed is None else job[0].seed, -job[0].iters()))
    # A detector pretraining reads a backbone pretraining: the backbones go first.
    first = [job for job in pre if job[0].after is None or job[0].after.part != "pretrain"]
    then = [job for job in pre if job not in first]
    batches = ((first, "backbone pretraining runs"), (then, "detector pretraining runs"))
    for batch, what in (*batches, (runs, "training runs")):
        if batch:
            console.rule(f"{len(batch)} {what}, {jobs} at a time (logs: <run>/stdout.txt)")
            _run_parallel(batch, jobs, console)


def check_part(part: str | None, plan: DictConfig) -> None:
    from huberkl.errors import InputError
    from huberkl.schema import PARTS

    names = [*(plan.scale.get("parts") or {}), *PARTS, "next", "all"]
    if part is not None and part not in names:
        raise InputError(f"--part {part!r}: expected one of {', '.join(names)}")


def choose_part(part: str | None, plan: DictConfig, missing: list[Step]) -> str | None:
    """The part to train (None: every missing run). No part given means ``next`` on a scale
    split into parts (so that a plain ``make reproduce`` stays within one part's time) and
    ``all`` on the others; ``next`` is the first part, in ``scale.parts`` order, that still
    has a run to train (None when every run is done)."""
    parts = list(plan.scale.get("parts") or {})
    if part is None:
        part = "next" if parts else "all"
    if part == "all":
        return None
    if part != "next":
        return part
    runs = [st for st in missing if st.seed is not None]
    return next((p for p in parts if any(in_part(st, plan, p) for st in runs)), None)


def reproduce(
    scale: str = "cpu",
    coco: str | None = None,
    force: bool = False,
    overrides: list[str] | None = None,
    part: str | None = None,
    reference: Path = REFERENCE,
) -> Path:
    """Run (or skip, when cached) every step of ``scale``, then write the report.

    ``part``: train only that part's runs (a group of :data:`huberkl.schema.PARTS`, a
    part of ``scale.parts``, ``next`` or ``all``; default: :func:`choose_part`); the
    figures, sets and measurements always run. Training runs recorded in ``reference`` with the same key
    are taken from there; the report covers every run done so far.
    """
    from rich.console import Console

    console = Console()
    plan = load_plan(scale, coco, overrides)
    check_part(part, plan)
    root = ROOT / scale
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan.yaml").write_text(OmegaConf.to_yaml(plan, resolve=True), encoding="utf-8")
    steps = build_steps(plan, root)
    t0 = time.perf_counter()
    jobs = max(1, int(plan.scale.get("jobs", 1)))
    parallel: list[tuple[Step, Path, str]] = []

    def visit(batch: list[Step], first: int, total: int | str) -> None:
        for i, step in enumerate(batch, first):
            out = root / step.name
            key = step.key()
            if not force and is_done(step, out, key):
                console.print(f"[dim][{i}/{total}] {step.name}: cached ({key})[/]")
                continue
            if not force and adopt(step, out, key, reference):
                console.print(f"[dim][{i}/{total}] {step.name}: from {reference} ({key})[/]")
                continue
            if step.resumable:
                parallel.append((step, out, key))  # training runs: run below, jobs at a time
                continue
            console.rule(f"[{i}/{total}] {step.name}: {step.title}")
            run_step(step, out, key, console.print)

    visit(steps, 1, "…")
    # The sweep's runs read the settings its noise steps measured: built now they exist.
    sweep = sweep_steps(plan, root, steps)
    steps += sweep
    visit(sweep, len(steps) - len(sweep) + 1, len(steps))
    chosen = choose_part(part, plan, [st for st, _, _ in parallel])
    skipped: list[tuple[Step, Path, str]] = []
    if chosen is not None:
        mine = [job[0].seed is None or in_part(job[0], plan, chosen) for job in parallel]
        skipped = [job for job, m in zip(parallel, mine, strict=True) if not m]
        parallel = [job for job, m in zip(parallel, mine, strict=True) if m]
        console.print(
            f"part {chosen}: {len(parallel)} training runs; {len(skipped)} runs of other parts"
            " wait (PART=<name> or PART=all; docs/PROTOCOL.md)"
        )
    elif not any(st.seed is not None for st, _, _ in parallel):
        console.print("every training run of the plan is done")
    train(parallel, jobs, console)
    from huberkl.report import build_report

    report = build_report(root, steps, plan, elapsed=time.perf_counter() - t0)
    console.print(f"report: {report}")
    after = choose_part("next", plan, [st for st, _, _ in skipped])
    if after is not None:
        console.print(f"next: `make reproduce` trains part {after} (docs/PROTOCOL.md)")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m huberkl.reproduce", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--scale", default="cpu", help="cpu (default), smoke or full")
    parser.add_argument("--coco", default=None, help="COCO folder for --scale full")
    parser.add_argument(
        "--part",
        default=None,
        help="train only this part's runs: one of scale.parts, a group (tables, retinanet,"
        " curves, sweep), next (the default where the scale has parts: the first part with"
        " runs left) or all",
    )
    parser.add_argument(
        "--force", action="store_true", help="ignore the cache and rerun every step"
    )
    parser.add_argument("overrides", nargs="*", help="overrides of conf/reproduce.yaml")
    args = parser.parse_args(argv)
    try:  # InputError: huberkl.cli.run prints it in one line, exit 2
        reproduce(args.scale, args.coco, args.force, args.overrides, part=args.part or None)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from huberkl.cli import run

    run(main)
