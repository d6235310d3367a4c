"""Data-parallel training under torchrun: 2 CPU processes with gloo, rank-0 files, gathered eval,
and parameters equal to one process trained on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from huberkl.detect import dist
from huberkl.detect.training import checkpoint as ckpt
from tests.helpers.detect_tiny import TINY_MODEL

# two processes each: make test-integration
pytestmark = pytest.mark.integration

TINY = [
    *TINY_MODEL,
    "+detect.model.score_thresh=0.0",  # every val image gets detections: gathering is visible
    "detect.batch_size=2",
    "detect.workers=0",
    "detect.threads=1",
    "detect.schedule.warmup_iters=1",
]


def test_resumable_sampler_partitions_and_resumes():
    data = list(range(10))
    ranks = [dist.ResumableSampler(data, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(1)
    parts = [[i for _, i in s] for s in ranks]
    assert sorted(parts[0] + parts[1]) == data  # each sample once per epoch over the ranks
    assert all(e == 1 for s in ranks for e, _ in s)
    ranks[0].set_start(3)
    assert [i for _, i in ranks[0]] == parts[0][3:] and len(ranks[0]) == 2
    ranks[0].set_start(0)
    ranks[0].set_epoch(2)
    assert [i for _, i in ranks[0]] != parts[0]  # a new order each epoch
    assert dist.shard(5, 0, 2) + dist.shard(5, 1, 2) == [0, 2, 4, 1, 3]


def test_single_process_helpers_are_identities():
    assert dist.from_env() == (0, 0, 1) or "RANK" in os.environ
    t = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(dist.all_reduce_mean(t), t)
    assert dist.gather_objects({"a": 1}) == [{"a": 1}]
    assert dist.broadcast_object("x") == "x"
    assert dist.any_rank(True, torch.device("cpu")) is True


def test_torchrun_two_gloo_processes(tmp_path):
    """A few DDP iterations: only rank 0 writes; evaluation scores all val images."""
    from huberkl.detect.data.synth import synthesize
    from huberkl.schema import SynthSchema

    root = tmp_path / "synth"
    synthesize(
        root, SynthSchema(images=8, size=64, seed=0, noise="none", noise_scale=0.0, val_images=4)
    )
    out, logs = tmp_path / "run", tmp_path / "logs"
    cmd = [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        f"--log-dir={logs}",
        "--redirects=3",
        "-m",
        "huberkl.cli",
        "detect",
        "--out",
        str(out),
        f"data.root={root}",
        "data.synth.images=8",
        "data.synth.val_images=4",
        "data.synth.size=64",
        *TINY,
        "detect.iters=3",
        "detect.ckpt_every=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, encoding="utf-8"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "checkpoint.pt",
        "class_ap.csv",
        "config.yaml",
        "detections.json",
        "losses.csv",
        "metrics.json",
        "pr.png",
        "run.json",
    ]
    assert not (tmp_path / "outputs").exists()  # no second run folder from rank 1
    lines = (out / "losses.csv").read_text(encoding="utf-8").splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["iteration", "1", "2", "3"]

    state = ckpt.read_checkpoint(out / "checkpoint.pt")
    assert state["iteration"] == 3 and state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # seeds offset

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["images"] == 4
    rows = json.loads((out / "detections.json").read_text(encoding="utf-8"))
    assert {r["image_id"] for r in rows} == {1, 2, 3, 4}  # both ranks' shards were gathered

    per_rank = {p.parent.name: p.read_text(encoding="utf-8") for p in logs.rglob("stderr.log")}
    per_rank_out = {p.parent.name: p.read_text(encoding="utf-8") for p in logs.rglob("stdout.log")}
    assert set(per_rank) == {"0", "1"}
    assert "AP50" in per_rank["0"] + per_rank_out["0"]
    for text in (per_rank["1"], per_rank_out["1"]):
        assert "AP50" not in text and "train" not in text and "run folder" not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_one_line_error():
    from huberkl.errors import InputError

    with pytest.raises(InputError, match="no CUDA device"):
        dist.pick_device("cuda")
    assert dist.pick_device("auto").type == "cpu"


def test_two_ranks_train_what_one_process_trains_on_the_global_batch(tmp_path):
    """DDP's proof: k steps on 2 gloo ranks (batch 2 each) give parameters equal across ranks
    and equal, to float tolerance, to one process with batch 4 (the same 4 images per step)."""
    from huberkl.detect.data.synth import synthesize
    from huberkl.schema import SynthSchema
    from tests.helpers import ddp_regressor
    from tests.helpers.ddp_regressor import BoxRegressor, train

    root = tmp_path / "synth"
    synthesize(
        root, SynthSchema(images=8, size=64, seed=0, noise="none", noise_scale=0.0, val_images=2)
    )
    over = [
        f"data.root={root}",
        "detect.iters=4",  # two epochs: the sampler's epoch change is covered
        "detect.workers=0",
        "detect.threads=1",
        "detect.eval=false",
        "detect.ckpt_every=0",
        "detect.optim.name=sgd",
        "detect.optim.lr=0.5",
        "detect.schedule.warmup_iters=0",
        "detect.schedule.name=constant",
    ]
    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        ddp_regressor.__file__,
        str(out),
        *over,
        "detect.batch_size=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, encoding="utf-8"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    torch.manual_seed(0)  # seed + rank 0, as training seeds before building the model
    init = {k: v.detach() for k, v in BoxRegressor().state_dict().items()}

    single = train([*over, "detect.batch_size=4"], tmp_path / "single")
    half = train([*over, "detect.batch_size=2"], tmp_path / "half")
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k  # gradients were averaged over the ranks
        torch.testing.assert_close(rank0[k], single[k], rtol=1e-5, atol=1e-6)
    # The check can fail: the training moved the weights, and half the batch trains otherwise.
    assert max((rank0[k] - init[k]).abs().max() for k in rank0) > 1e-2
    assert max((half[k] - single[k]).abs().max() for k in rank0) > 1e-3
