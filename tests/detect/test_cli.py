"""`huberkl detect`: default train command, evaluate, summarize, Hydra multirun, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from huberkl.cli import main
from tests.helpers.detect_tiny import TINY_RUN

TINY = [
    *TINY_RUN,
    "detect.schedule.warmup_iters=1",
]


def tiny(root: Path, *extra: str) -> list[str]:
    return [f"data.root={root}", *TINY, *extra]


def run(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``huberkl ARGS`` in-process through the real entry point: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["huberkl", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_detect_defaults_to_train(monkeypatch, capsys):
    code, out, _ = run(["detect", "--cfg", "detect=retinanet"], monkeypatch, capsys)
    assert code == 0 and yaml.safe_load(out)["detect"]["model"]["arch"] == "retinanet"
    code, out2, _ = run(["detect", "train", "--cfg", "detect=retinanet"], monkeypatch, capsys)
    assert code == 0 and out2 == out
    code, out, _ = run(["detect", "--help"], monkeypatch, capsys)
    assert code == 0 and all(c in out for c in ("train", "evaluate", "summarize"))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["detect", "detect.nope=1"], "detect.nope"),
        (["detect", "-m", "params=exp-a,nope"], "nope"),
        (["detect", "evaluate", "--checkpoint", "missing.pt"], "missing.pt"),
        (["detect", "evaluate", "--checkpoint", "x.pt", "--split", "test"], "--split"),
        (["detect", "summarize", "no-such-folder"], "no-such-folder"),
        (["detect", "summarize", "notes.txt"], "notes.txt: is a file; give the sweep folder"),
        (["detect", "--out", "r", "detect.batch_size=0"], "detect.batch_size=0"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    code, _, err = run(args, monkeypatch, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_train_evaluate_and_wrong_architecture(data_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    code, _, err = run(
        ["detect", "--out", str(out), *tiny(data_root, "detect.iters=2")], monkeypatch, capsys
    )
    assert code == 0, err
    for name in (
        "config.yaml",
        "run.json",
        "losses.csv",
        "checkpoint.pt",
        "metrics.json",
        "detections.json",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["seed"] == 0
    assert yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))["detect"]["iters"] == 2

    ev = tmp_path / "ev"
    args = ["detect", "evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(ev)]
    code, stdout, err = run([*args, *tiny(data_root)], monkeypatch, capsys)
    assert code == 0, err
    assert (
        json.loads((ev / "metrics.json").read_text(encoding="utf-8"))["AP"]
        == json.loads((out / "metrics.json").read_text(encoding="utf-8"))["AP"]
    )
    assert "AP50" in stdout

    code, _, err = run([*args, *tiny(data_root, "detect=retinanet")], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "another architecture" in err and "checkpoint.pt" in err


def _fake_run(folder: Path, preset: str, arch: str, ap: float, seed: int = 0) -> None:
    from huberkl import config

    cfg = config.compose([f"params={preset}", f"detect.model.arch={arch}", f"seed={seed}"])
    config.save_run(cfg, folder, "detect")
    metrics = {"AP": ap, "AP50": ap + 0.2, "AP75": ap + 0.05}
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


def test_summarize_table(tmp_path, monkeypatch, capsys):
    _fake_run(tmp_path / "a", "implementation", "faster_rcnn", 0.40)
    _fake_run(tmp_path / "b", "exp-c", "faster_rcnn", 0.50)
    _fake_run(tmp_path / "c", "exp-c", "faster_rcnn", 0.52, seed=1)
    _fake_run(tmp_path / "d" / "deep", "exp-a", "retinanet", 0.45)
    code, out, err = run(["detect", "summarize", str(tmp_path)], monkeypatch, capsys)
    assert code == 0, err
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    csv_text = (tmp_path / "summary.csv").read_text(encoding="utf-8").splitlines()
    # Implementation's proposal stage: α = 1/9, σ = 1, λ = 1 -> label wa/9, prediction wa.
    assert "wa/9 ha/9 wa/9 ha/9" in md
    assert "51.0 ± 1.4" in md  # exp-c, two seeds pooled
    assert csv_text[0].startswith("detector,setting,data,n,AP50,AP75,AP")
    frcnn = [ln for ln in csv_text[1:] if ln.startswith("faster_rcnn")]
    assert [ln.split(",")[1] for ln in frcnn] == ["Implementation"] * 2 + ["Experiment C"] * 2
    retina = [ln for ln in csv_text if ln.startswith("retinanet")]
    assert len(retina) == 1 and ",head," in retina[0]  # one-stage: one row of noise scales
    assert "Experiment C" in out


@pytest.mark.integration
def test_multirun_basic_launcher_then_summarize(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    args = ["detect", "-m", "--out", str(sweep), "params=implementation,exp-a"]
    code, _, err = run([*args, *tiny(data_root, "detect.iters=1")], monkeypatch, capsys)
    assert code == 0, err
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name.split("-", 1)[0] for p in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "metrics.json").is_file() and (job / "config.yaml").is_file()
    presets = {
        yaml.safe_load((j / "config.yaml").read_text(encoding="utf-8"))["params"]["name"]
        for j in jobs
    }
    assert presets == {"implementation", "exp-a"}
    code, out, _ = run(["detect", "summarize", str(sweep)], monkeypatch, capsys)
    assert code == 0 and "Experiment A" in out and "Implementation" in out


@pytest.mark.integration
def test_multirun_submitit_local(data_root, tmp_path):
    """The sweep goes through Hydra's launcher plugin: each job is a submitit subprocess."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "huberkl.cli",
        "detect",
        "-m",
        "--out",
        str(sweep),
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "hydra.launcher.cpus_per_task=1",
        "seed=0,1",
        *tiny(data_root, "detect.iters=1", "detect.eval=false"),
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, encoding="utf-8"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 2
    for job in jobs:
        assert (job / "checkpoint.pt").is_file() and (job / "run.json").is_file()
    assert list(sweep.rglob("*submitit*")) or list(sweep.rglob("*.pkl"))  # submitit's own files


def _state(path: Path) -> dict:
    from huberkl.detect.training.checkpoint import read_checkpoint

    return read_checkpoint(path)


@pytest.mark.integration
def test_sigterm_to_the_process_group_with_a_loader_worker(data_root, tmp_path):
    """The quick config's workers=1: a scheduler's SIGTERM (sent to the whole process group)
    checkpoints and exits 143; the resumed run ends bit for bit as an uninterrupted one."""
    import os

    out = tmp_path / "run"
    base = [sys.executable, "-m", "huberkl.cli", "detect", "--out", str(out)]
    over = tiny(data_root, "detect.workers=1", "detect.eval=false", "detect.schedule.name=constant")
    proc = subprocess.Popen(
        [*base, *over, "detect.iters=400"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        start_new_session=True,  # its own process group, as a job under a scheduler
    )
    csv_path = out / "losses.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (
        csv_path.is_file() and len(csv_path.read_text(encoding="utf-8").splitlines()) > 3
    ):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "detect.resume=true" in stdout + stderr
    stopped = _state(out / "checkpoint.pt")["iteration"]
    assert 3 <= stopped < 400
    assert len(csv_path.read_text(encoding="utf-8").splitlines()) == stopped + 1

    done = subprocess.run(
        [*base, *over, f"detect.iters={stopped + 2}", "detect.resume=true"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        encoding="utf-8",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stderr
    rows = [ln.split(",")[0] for ln in csv_path.read_text(encoding="utf-8").splitlines()[1:]]
    assert rows == [str(i) for i in range(1, stopped + 3)]

    from huberkl import config
    from huberkl.detect.training import train as training

    training.train(config.compose([*over, f"detect.iters={stopped + 2}"]), tmp_path / "full")
    a, b = _state(out / "checkpoint.pt")["model"], _state(tmp_path / "full" / "checkpoint.pt")
    assert all(torch.equal(a[k], b["model"][k]) for k in a)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_exit_codes(signum, code, data_root, tmp_path, monkeypatch, capsys):
    """SIGINT 130, SIGTERM 143 (128 + signal), each after its checkpoint."""
    import os

    from huberkl.detect.training import train as training

    train = training.train

    def signalled(cfg, out_dir, on_iteration=None):
        def hook(i, losses):
            if i == 2:
                os.kill(os.getpid(), signum)

        return train(cfg, out_dir, on_iteration=hook)

    monkeypatch.setattr(training, "train", signalled)
    out = tmp_path / "run"
    code_, _, err = run(
        ["detect", "--out", str(out), *tiny(data_root, "detect.iters=50")], monkeypatch, capsys
    )
    assert code_ == code, err
    assert _state(out / "checkpoint.pt")["iteration"] == 2


def test_detect_trains_on_the_noisy_set_on_disk(tmp_path, monkeypatch, capsys):
    """README: `data synth --noise laplace` then `detect data.root=...` (config noise: none)."""
    monkeypatch.chdir(tmp_path)
    shapes = tmp_path / "shapes"
    code, _, err = run(
        ["data", "synth", "--out", str(shapes), "--noise", "laplace", "--noise-scale", "0.05"]
        + ["--images", "8", "--val-images", "4", "--size", "64"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    ann = shapes / "annotations" / "instances_train.json"
    before = ann.read_bytes()
    out = tmp_path / "run"
    over = [f"data.root={shapes}", *TINY[3:], "detect.iters=1", "detect.eval=false"]
    assert not any(o.startswith("data.synth") for o in over)  # the config says 800, none
    code, _, err = run(["detect", "--out", str(out), *over], monkeypatch, capsys)
    assert code == 0, err
    assert ann.read_bytes() == before
    said = [ln for ln in err.splitlines() if "noise=laplace" in ln]
    assert len(said) == 1 and "noise_scale=0.05" in said[0] and "data.synth" in said[0], err
    recorded = json.loads((out / "run.json").read_text(encoding="utf-8"))["data"]
    assert recorded["source"] == "on disk" and recorded["info"]["noise"] == "laplace"
    assert "noise" in recorded["differs_from_config"]

    from huberkl import config
    from huberkl.detect.data.datasets import load_split

    cfg = config.compose([f"data.root={shapes}"])
    noisy = load_split(cfg.data, "train")
    clean = json.loads(
        (shapes / "annotations" / "instances_train_clean.json").read_text(encoding="utf-8")
    )
    clean_boxes = {a["id"]: a["bbox"] for a in clean["annotations"]}
    first = noisy.coco.anns[1]["bbox"]
    assert first != clean_boxes[1]  # the loader reads the noisy boxes
    x, y, w, h = first
    boxes = noisy[noisy.ids.index(noisy.coco.anns[1]["image_id"])][1]["boxes"].tolist()
    assert any(b == pytest.approx([x, y, x + w, y + h], abs=1e-4) for b in boxes)


def test_detect_refuses_to_synthesise_into_a_folder_that_holds_something_else(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep", encoding="utf-8")
    code, _, err = run(
        ["detect", "--out", str(tmp_path / "run"), f"data.root={tmp_path / 'mine'}"],
        monkeypatch,
        capsys,
    )
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "notes.txt" in errors[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_evaluate_uses_the_runs_own_data_and_config(data_root, tmp_path, monkeypatch, capsys):
    """`evaluate --checkpoint RUN/checkpoint.pt` alone: the run's data, no set synthesised."""
    from huberkl.detect.data.synth import synthesize
    from huberkl.schema import SynthSchema

    out = tmp_path / "run"
    code, _, err = run(
        ["detect", "--out", str(out), *tiny(data_root, "detect.iters=2")], monkeypatch, capsys
    )
    assert code == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    args = ["detect", "evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--out", "ev"]
    code, stdout, err = run(args, monkeypatch, capsys)
    assert code == 0, err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["ev"]  # no outputs/data/synth
    ours = json.loads((elsewhere / "ev" / "metrics.json").read_text(encoding="utf-8"))
    trained = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert ours["AP"] == trained["AP"] and ours["images"] == 4

    other = synthesize(tmp_path / "other", SynthSchema(images=2, size=64, seed=5, val_images=3))[
        "root"
    ]
    code, _, err = run([*args[:4], "--out", "ev2", f"data.root={other}"], monkeypatch, capsys)
    assert code == 0, err
    assert (
        json.loads((elsewhere / "ev2" / "metrics.json").read_text(encoding="utf-8"))["images"] == 3
    )
    saved = yaml.safe_load((elsewhere / "ev2" / "config.yaml").read_text(encoding="utf-8"))
    assert saved["data"]["val_ann"] == f"{other}/annotations/instances_val.json"


def test_resume_true_without_out_continues_only_a_run_with_this_config(
    data_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    a = tiny(data_root, "detect.iters=1", "detect.eval=false")
    assert run(["detect", *a], monkeypatch, capsys)[0] == 0
    time.sleep(1.1)  # run folders are named by the second
    b = [*a, "params=exp-a"]
    assert run(["detect", *b], monkeypatch, capsys)[0] == 0
    runs_ = sorted((tmp_path / "outputs" / "detect").iterdir())
    assert len(runs_) == 2
    code, _, err = run(["detect", *a, "detect.resume=true"], monkeypatch, capsys)
    assert code == 0, err
    assert f"resuming from outputs/detect/{runs_[0].name}/checkpoint.pt" in err, err
    code, _, err = run(["detect", *a, "seed=3", "detect.resume=true"], monkeypatch, capsys)
    assert code == 2 and "no run under" in err and len(err.strip().splitlines()) == 1, err


def test_out_at_an_existing_run_without_resume_is_refused(data_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    over = ["detect", "--out", str(out), *tiny(data_root, "detect.iters=1", "detect.eval=false")]
    assert run(over, monkeypatch, capsys)[0] == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run(over, monkeypatch, capsys)
    assert code == 2 and "already holds a run" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # config, log, run.json kept
    code, _, err = run([*over, "params=exp-b", "detect.resume=true"], monkeypatch, capsys)
    assert code == 2 and "params." in err and len(err.strip().splitlines()) == 1, err


def test_detect_help_lists_the_training_options(monkeypatch, capsys):
    """`huberkl detect --help` shows what `huberkl detect --out X -m ...` accepts (training
    is the default sub-command), besides the sub-commands; `detect train --help` is as was."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(["detect", "--help"], monkeypatch, capsys)
    assert code == 0
    for needle in ("--out", "--multirun", "-m", "--cfg", "Options of train", "predict", "evaluate"):
        assert needle in out, (needle, out)
    code, train_help, _ = run(["detect", "train", "--help"], monkeypatch, capsys)
    assert code == 0 and "--out" in train_help and "Options of train" not in train_help
    code, out, _ = run(["detect", "--cfg", "detect=retinanet"], monkeypatch, capsys)
    assert code == 0 and yaml.safe_load(out)["detect"]["model"]["arch"] == "retinanet"
