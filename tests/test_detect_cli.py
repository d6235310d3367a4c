"""`huberkl detect`: default train command, evaluate, summarize, Hydra multirun, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _detect_tiny import TINY_MODEL

from huberkl.cli import main

TINY = [
    "data.synth.images=8",
    "data.synth.val_images=4",
    "data.synth.size=64",
    *TINY_MODEL,
    "detect.batch_size=2",
    "detect.workers=0",
    "detect.threads=1",
    "detect.ckpt_every=0",
    "detect.schedule.warmup_iters=1",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from huberkl.detect.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, images=8, size=64, seed=0, noise="none", noise_scale=0.0, val_images=4)
    return root


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
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
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
    assert json.loads((out / "run.json").read_text())["seed"] == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["detect"]["iters"] == 2

    ev = tmp_path / "ev"
    args = ["detect", "evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(ev)]
    code, stdout, err = run([*args, *tiny(data_root)], monkeypatch, capsys)
    assert code == 0, err
    assert (
        json.loads((ev / "metrics.json").read_text())["AP"]
        == json.loads((out / "metrics.json").read_text())["AP"]
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
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_summarize_table(tmp_path, monkeypatch, capsys):
    _fake_run(tmp_path / "a", "implementation", "faster_rcnn", 0.40)
    _fake_run(tmp_path / "b", "exp-c", "faster_rcnn", 0.50)
    _fake_run(tmp_path / "c", "exp-c", "faster_rcnn", 0.52, seed=1)
    _fake_run(tmp_path / "d" / "deep", "exp-a", "retinanet", 0.45)
    code, out, err = run(["detect", "summarize", str(tmp_path)], monkeypatch, capsys)
    assert code == 0, err
    md = (tmp_path / "summary.md").read_text()
    csv_text = (tmp_path / "summary.csv").read_text().splitlines()
    # Implementation's proposal stage: α = 1/9, σ = 1, λ = 1 -> label wa/9, prediction wa.
    assert "wa/9 ha/9 wa/9 ha/9" in md
    assert "51.0 ± 1.4" in md  # exp-c, two seeds pooled
    assert csv_text[0].startswith("detector,setting,data,n,AP50,AP75,AP")
    frcnn = [ln for ln in csv_text[1:] if ln.startswith("faster_rcnn")]
    assert [ln.split(",")[1] for ln in frcnn] == ["Implementation"] * 2 + ["Experiment C"] * 2
    retina = [ln for ln in csv_text if ln.startswith("retinanet")]
    assert len(retina) == 1 and ",head," in retina[0]  # one-stage: one row of noise scales
    assert "Experiment C" in out


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
    presets = {yaml.safe_load((j / "config.yaml").read_text())["params"]["name"] for j in jobs}
    assert presets == {"implementation", "exp-a"}
    code, out, _ = run(["detect", "summarize", str(sweep)], monkeypatch, capsys)
    assert code == 0 and "Experiment A" in out and "Implementation" in out


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
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 2
    for job in jobs:
        assert (job / "checkpoint.pt").is_file() and (job / "run.json").is_file()
    assert list(sweep.rglob("*submitit*")) or list(sweep.rglob("*.pkl"))  # submitit's own files


def test_sigterm_checkpoints_and_cli_resume(data_root, tmp_path):
    """SIGTERM mid-run: checkpoint, resume hint, exit 130; the resumed run completes the log."""
    out = tmp_path / "run"
    base = [sys.executable, "-m", "huberkl.cli", "detect", "--out", str(out)]
    over = tiny(data_root, "detect.iters=400", "detect.eval=false")
    proc = subprocess.Popen(
        [*base, *over], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    csv_path = out / "losses.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (
        csv_path.is_file() and len(csv_path.read_text().splitlines()) > 3
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "detect.resume=true" in stdout + stderr
    from huberkl.detect.checkpoint import read_checkpoint

    stopped = read_checkpoint(out / "checkpoint.pt")["iteration"]
    assert 3 <= stopped < 400
    assert len(csv_path.read_text().splitlines()) == stopped + 1

    more = tiny(data_root, f"detect.iters={stopped + 2}", "detect.eval=false", "detect.resume=true")
    done = subprocess.run(
        [*base, *more],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stderr
    rows = [ln.split(",")[0] for ln in csv_path.read_text().splitlines()[1:]]
    assert rows == [str(i) for i in range(1, stopped + 3)]
