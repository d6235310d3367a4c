"""The training loop: exact resume, non-finite stop, atomic checkpoints, schedules.

Tiny everything (64-px images, a few-thousand-parameter backbone, a handful of
iterations); the 10-minute quality runs of the CPU quick configuration are ``slow``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from huberkl import config
from huberkl.detect.evaluation.evaluate import evaluate_checkpoint
from huberkl.detect.training import checkpoint as ckpt
from huberkl.detect.training import optim
from huberkl.detect.training import train as training
from huberkl.detect.training.loop import NonFiniteLossError
from huberkl.errors import InputError
from tests.helpers.detect_tiny import TINY_MODEL


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    """A 64-px synthetic set of 8 train / 4 val images and a tiny Faster R-CNN."""
    return [
        f"data.root={root}",
        "data.synth.images=8",
        "data.synth.val_images=4",
        "data.synth.size=64",
        *TINY_MODEL,
        "detect.iters=6",
        "detect.batch_size=2",
        "detect.workers=0",
        "detect.ckpt_every=0",
        "detect.eval=false",
        "detect.schedule.warmup_iters=2",
        "detect.threads=1",  # tiny ops: one thread is ~10x faster than two on a busy machine
        *extra,
    ]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.read_checkpoint(path)["model"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_resume_after_sigint_is_bit_exact(data_root, tmp_path):
    """Interrupt at iteration 3 (mid-epoch), resume, and match an uninterrupted run bit for bit."""
    over = tiny_overrides(
        data_root, "detect.hflip=true", "detect.optim.name=sgd", "detect.optim.lr=0.01"
    )
    full = training.train(config.compose(over), tmp_path / "full")
    assert full.status == "finished" and full.iteration == 6

    def interrupt(i, losses):
        if i == 3:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs in the background
    part = training.train(config.compose(over), tmp_path / "part", on_iteration=interrupt)
    assert part.status == "interrupted" and part.iteration == 3
    assert ckpt.read_checkpoint(tmp_path / "part" / "checkpoint.pt")["iteration"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # handler restored

    resumed = training.train(config.compose([*over, "detect.resume=true"]), tmp_path / "part")
    assert resumed.status == "finished" and resumed.iteration == 6

    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The loss log of the resumed run continues the interrupted one, row for row.
    csv_full, csv_part = tmp_path / "full" / "losses.csv", tmp_path / "part" / "losses.csv"
    assert csv_full.read_bytes() == csv_part.read_bytes()
    rows_full, rows_part = _rows(csv_full), _rows(csv_part)
    assert [r["iteration"] for r in rows_part] == [str(i) for i in range(1, 7)]
    assert rows_full == rows_part


def test_adamw_cosine_resume_from_periodic_checkpoint(data_root, tmp_path):
    """A run killed after its periodic checkpoint (rows past it on disk) resumes exactly."""
    over = tiny_overrides(data_root, "detect.ckpt_every=2", "detect.iters=5")
    full = training.train(config.compose(over), tmp_path / "full")
    part_dir = tmp_path / "part"

    class Killed(Exception):
        pass

    def die(i, losses):
        if i == 3:  # after the checkpoint of iteration 2 and the CSV row of iteration 3
            raise Killed

    with pytest.raises(Killed):
        training.train(config.compose(over), part_dir, on_iteration=die)
    assert ckpt.read_checkpoint(part_dir / "checkpoint.pt")["iteration"] == 2
    assert len(_rows(part_dir / "losses.csv")) == 3
    training.train(config.compose([*over, f"detect.resume={part_dir / 'checkpoint.pt'}"]), part_dir)
    a, b = _weights(tmp_path / "full"), _weights(part_dir)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "full" / "losses.csv").read_bytes() == (part_dir / "losses.csv").read_bytes()
    assert full.iteration == 5


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    build = training.make_model
    calls = {"n": 0}

    def poisoned(cfg, num_classes):
        model = build(cfg, num_classes)

        def hook(module, args, out):
            if module.training:
                calls["n"] += 1
                if calls["n"] == 4:
                    return {k: v * float("nan") for k, v in out.items()}
            return out

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(training, "make_model", poisoned)
    cfg = config.compose(tiny_overrides(data_root, "detect.ckpt_every=2"))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration 4") as err:
        training.train(cfg, tmp_path)
    assert "iteration 2" in str(err.value) and "\n" not in str(err.value)
    state = ckpt.read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len(_rows(tmp_path / "losses.csv")) == 3
    assert not list(tmp_path.glob(".*tmp"))


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint({"model": {"w": torch.ones(2)}, "arch": {"arch": "a"}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.save_checkpoint({"model": {"w": torch.zeros(2)}, "bad": Unpicklable()}, path)
    assert torch.equal(ckpt.read_checkpoint(path)["model"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_checkpoint_from_another_architecture_is_refused(data_root, tmp_path):
    over = tiny_overrides(data_root, "detect.iters=1")
    training.train(config.compose(over), tmp_path / "frcnn")
    cfg = config.compose([*over, "detect.model.arch=retinanet"])
    with pytest.raises(InputError) as err:
        evaluate_checkpoint(cfg, tmp_path / "frcnn" / "checkpoint.pt", "val", tmp_path / "ev")
    msg = str(err.value)
    assert "\n" not in msg and "checkpoint.pt" in msg
    assert "detect.model.arch=faster_rcnn (config: retinanet)" in msg
    with pytest.raises(InputError, match=r"detect.model.fpn_channels: 16 -> 8"):
        training.train(
            config.compose([*over, "detect.model.fpn_channels=8", "detect.resume=true"]),
            tmp_path / "frcnn",
        )


def test_unreadable_and_missing_checkpoints(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        ckpt.read_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint", encoding="utf-8")
    with pytest.raises(InputError, match="not a readable huberkl checkpoint"):
        ckpt.read_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(1)}, other)
    with pytest.raises(InputError, match="not a huberkl checkpoint"):
        ckpt.read_checkpoint(other)


def test_evaluate_writes_metrics_and_detections(data_root, tmp_path):
    over = tiny_overrides(data_root, "detect.iters=2", "detect.eval=true")
    result = training.train(config.compose(over), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["images"] == 4 and metrics["iteration"] == 2
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert key in metrics and metrics[key] == result.metrics[key]
    rows = json.loads((tmp_path / "detections.json").read_text(encoding="utf-8"))
    assert len(rows) == metrics["detections"]
    assert all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in rows)
    again = evaluate_checkpoint(config.compose(over), tmp_path, "val", tmp_path / "ev")
    assert again["AP"] == metrics["AP"] and (tmp_path / "ev" / "metrics.json").is_file()


def test_warmup_step_and_cosine_schedules():
    step = optim.WarmupSchedule(
        100, "step", warmup_iters=10, warmup_factor=0.1, milestones=(0.5, 0.8)
    )
    assert step(0) == pytest.approx(0.1)
    assert step(5) == pytest.approx(0.1 * 0.5 + 0.5)
    assert [step(i) for i in (10, 49, 50, 79, 80, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    cos = optim.WarmupSchedule(100, "cosine", warmup_iters=0)
    assert [cos(0), cos(50), cos(100)] == pytest.approx([1.0, 0.5, 0.0])
    assert cos(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    with pytest.raises(InputError, match="milestones"):
        optim.WarmupSchedule(10, "step", milestones=(5.0,))
    with pytest.raises(InputError, match="schedule.name"):
        optim.WarmupSchedule(10, "linear")


def test_optimizer_choice():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(optim.build_optimizer(p, "sgd", 0.1), torch.optim.SGD)
    assert isinstance(optim.build_optimizer(p, "adamw", 0.1), torch.optim.AdamW)
    with pytest.raises(InputError, match="sgd or adamw"):
        optim.build_optimizer(p, "adam", 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["quick", "retinanet"])
def test_quick_configuration_quality(variant, tmp_path):
    """Item 9: the CPU quick configuration reaches AP50 >= 0.8 and AP >= 0.5 in <= 10 min."""
    t0 = time.perf_counter()
    result = training.train(
        config.compose([f"detect={variant}", "data.root=outputs/data/synth"]), tmp_path
    )
    minutes = (time.perf_counter() - t0) / 60
    print(
        f"{variant}: AP50 {result.metrics['AP50']:.3f} AP {result.metrics['AP']:.3f} {minutes:.1f} min"
    )
    assert result.metrics["AP50"] >= 0.8 and result.metrics["AP"] >= 0.5
    assert minutes <= 10.5


def test_extending_a_finished_cosine_run_follows_the_new_schedule(data_root, tmp_path):
    """detect.iters 4 -> 8 on a finished cosine run: the extra steps use the 8-step schedule."""
    over = tiny_overrides(data_root, "detect.iters=4", "detect.optim.name=sgd")
    first = training.train(config.compose(over), tmp_path)
    assert first.status == "finished"
    longer = [*over, "detect.iters=8", "detect.resume=true"]
    training.train(config.compose(longer), tmp_path)
    rows = _rows(tmp_path / "losses.csv")
    assert [r["iteration"] for r in rows] == [str(i) for i in range(1, 9)]
    cfg = config.compose(longer).detect
    schedule = optim.WarmupSchedule(8, "cosine", warmup_iters=2, warmup_factor=0.001)
    for row in rows[4:]:  # the lr of step i (row i + 1) is lr * factor(i)
        want = cfg.optim.lr * schedule(int(row["iteration"]) - 1)
        assert want > 0  # today's code trained these steps at lr 0
        assert float(row["lr"]) == pytest.approx(want, rel=1e-5)
    assert float(rows[4]["lr"]) == pytest.approx(0.5 * cfg.optim.lr, rel=1e-5)  # cos(pi/2)


def test_resume_refuses_a_change_of_params(data_root, tmp_path):
    """An exp-a run must not continue as exp-b: one line naming the key, nothing written."""
    over = tiny_overrides(data_root, "detect.iters=1", "params=exp-a")
    training.train(config.compose(over), tmp_path)
    before = (tmp_path / "losses.csv").read_bytes()
    with pytest.raises(InputError) as err:
        training.train(config.compose([*over, "params=exp-b", "detect.resume=true"]), tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "params." in msg and "exp-a -> exp-b" in msg
    assert (tmp_path / "losses.csv").read_bytes() == before


def test_a_folder_holding_a_run_is_not_trained_into_without_resume(data_root, tmp_path):
    over = tiny_overrides(data_root, "detect.iters=2")
    training.train(config.compose(over), tmp_path)
    log, weights = (tmp_path / "losses.csv").read_bytes(), _weights(tmp_path)
    with pytest.raises(InputError, match="already holds a run.*detect.resume=true"):
        training.train(config.compose(over), tmp_path)
    assert (tmp_path / "losses.csv").read_bytes() == log
    after = _weights(tmp_path)
    assert all(torch.equal(weights[k], after[k]) for k in weights)


def test_checkpoint_config_applies_overrides_and_moves_paths(data_root, tmp_path):
    """The run's own config, with data.root=... moving every data path below it."""
    from huberkl.detect.training import runs

    over = tiny_overrides(data_root, "detect.iters=1", "params=exp-c")
    training.train(config.compose(over), tmp_path / "run")
    state = ckpt.read_checkpoint(tmp_path / "run", mmap=True)
    same = runs.checkpoint_config(state)
    assert same.params.name == "exp-c" and same.data.val_ann == str(
        data_root / "annotations" / "instances_val.json"
    )
    moved = runs.checkpoint_config(state, ["data.root=/elsewhere", "detect.eval_batch_size=3"])
    assert moved.data.val_ann == "/elsewhere/annotations/instances_val.json"
    assert moved.detect.eval_batch_size == 3 and moved.params.name == "exp-c"
    assert moved.detect.model.fpn_channels == 16  # the tiny model, not the default
    assert runs.checkpoint_config(state, ["params=exp-a"]).params.name == "exp-a"
    # A preset found on a search path (as `huberkl noise` writes one; the reproduction's
    # sweep resumes so): hydra.* shapes the composition, it is not a key of the run config.
    from huberkl.paths import CONF_DIR

    (tmp_path / "sp" / "params").mkdir(parents=True)
    text = (CONF_DIR / "params" / "exp-b.yaml").read_text(encoding="utf-8")
    (tmp_path / "sp" / "params" / "mine.yaml").write_text(
        text.replace("name: exp-b", "name: mine"), encoding="utf-8"
    )
    found = [f"hydra.searchpath=[file://{tmp_path / 'sp'}]", "params=mine"]
    resumed = runs.checkpoint_config(state, found)
    assert resumed.params.name == "mine" and "hydra" not in resumed
