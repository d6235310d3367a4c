"""`huberkl detect --out RUN detect.resume=true`, exactly as a stopped run prints it.

The resumed run takes its config from its own checkpoint: no override has to be typed
again. Overrides given with it may lengthen the schedule or change how the run is carried
out; a run-defining one that differs is refused in one short line naming only that key.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from huberkl.detect.training import checkpoint as ckpt
from huberkl.detect.training import train as training
from tests.helpers.cli import run
from tests.helpers.detect_tiny import TINY_RUN

# each stops and resumes a training subprocess: make test-integration
pytestmark = pytest.mark.integration

TINY = [
    *TINY_RUN,
    "detect.schedule.warmup_iters=2",
    "detect.optim.name=sgd",
    "detect.optim.lr=0.01",
    "detect.hflip=true",
]


def tiny(root: Path, *extra: str) -> list[str]:
    return [f"data.root={root}", *TINY, *extra]


def interrupt_at(monkeypatch, iteration: int, signum: int = signal.SIGINT) -> None:
    """The next ``huberkl detect`` gets ``signum`` after ``iteration`` (as Ctrl-C would)."""
    train = training.train

    def signalled(cfg, out_dir, on_iteration=None):
        def hook(i, losses):
            if i == iteration:
                os.kill(os.getpid(), signum)

        return train(cfg, out_dir, on_iteration=hook)

    monkeypatch.setattr(training, "train", signalled)


def printed_command(err: str) -> str:
    """The ``continue with: ...`` command of a stopped run's last words."""
    found = re.findall(r"continue with: (huberkl .+)$", err, flags=re.MULTILINE)
    assert len(found) == 1, err
    return found[0].strip()


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return ckpt.read_checkpoint(folder / "checkpoint.pt")["model"]


def stop_a_run(data_root, tmp_path, monkeypatch, capsys, iters: int = 6) -> tuple[Path, str]:
    """A tiny run under ``runs/b11`` stopped by SIGINT at iteration 3: (folder, hint)."""
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as m:
        interrupt_at(m, 3)
        code, _, err = run(
            m, capsys, "detect", "--out", "runs/b11", *tiny(data_root, f"detect.iters={iters}")
        )
    assert code == 130, err
    assert ckpt.read_checkpoint(tmp_path / "runs/b11/checkpoint.pt")["iteration"] == 3
    return tmp_path / "runs" / "b11", printed_command(err)


def test_the_printed_command_alone_finishes_the_run_as_if_never_stopped(
    data_root, tmp_path, monkeypatch, capsys
):
    """The issue's case: Ctrl-C, then the printed line in a shell, nothing added."""
    folder, hint = stop_a_run(data_root, tmp_path, monkeypatch, capsys)
    assert hint == "huberkl detect --out runs/b11 detect.resume=true"

    bin_dir = str(Path(sys.executable).parent)  # where the `huberkl` script is installed
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        hint,
        shell=True,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        encoding="utf-8",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from runs/b11/checkpoint.pt at iteration 3" in done.stderr
    assert "changed settings" not in done.stderr  # the run's own config, nothing differs

    full = tmp_path / "full"
    code, _, err = run(
        monkeypatch, capsys, "detect", "--out", str(full), *tiny(data_root, "detect.iters=6")
    )
    assert code == 0, err
    a, b = weights(full), weights(folder)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "losses.csv").read_bytes() == (folder / "losses.csv").read_bytes()
    ours = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    theirs = json.loads((full / "metrics.json").read_text(encoding="utf-8"))
    assert ours["AP"] == theirs["AP"] and ours["iteration"] == 6

    # run.json still says how the run was started; the resume is added to it.
    info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    assert f"data.root={data_root}" in info["overrides"]
    assert [r["overrides"] for r in info["resumed"]] == [["detect.resume=true"]]
    saved = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    assert saved["detect"]["model"]["fpn_channels"] == 16  # the tiny model, not the default


def test_overrides_on_resume(data_root, tmp_path, monkeypatch, capsys):
    """Schedule and how-it-runs keys are honoured; run-defining ones must agree."""
    folder, hint = stop_a_run(data_root, tmp_path, monkeypatch, capsys, iters=4)
    argv = shlex.split(hint)[1:]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    for extra, named in (
        (["seed=3"], "seed: 0 -> 3"),
        (["params=exp-b"], "params.name: implementation -> exp-b"),
        (["detect.batch_size=4"], "detect.batch_size: 2 -> 4"),
        (["data.synth.images=9"], "data.synth.images: 8 -> 9"),
    ):
        code, _, err = run(monkeypatch, capsys, *argv, *extra)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and named in lines[0], err
        assert len(lines[0]) < 400, lines[0]  # the keys that differ, not the whole config
        assert "detect.model" not in lines[0] and "detect.iters" not in lines[0]
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written

    # The run's own values given again, the schedule lengthened, how it runs changed.
    same = [f"data.root={data_root}", "seed=0", "params=implementation", "detect.batch_size=2"]
    runs_ = ["detect.threads=2", "detect.ckpt_every=1", "detect.eval=false", "detect.workers=1"]
    code, _, err = run(monkeypatch, capsys, *argv, *same, *runs_, "detect.iters=5")
    assert code == 0, err
    assert "resuming from runs/b11/checkpoint.pt at iteration 3" in err
    assert "detect.iters: 4 -> 5" in err and "follows the new schedule" in err
    rows = (folder / "losses.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert ckpt.read_checkpoint(folder / "checkpoint.pt")["iteration"] == 5
    assert not (folder / "metrics.json").exists()  # detect.eval=false was honoured


def test_resume_from_a_checkpoint_path_without_out(data_root, tmp_path, monkeypatch, capsys):
    """``detect.resume=PATH`` (a checkpoint or its folder) continues that run in its folder."""
    folder, _ = stop_a_run(data_root, tmp_path, monkeypatch, capsys, iters=5)
    code, _, err = run(monkeypatch, capsys, "detect", f"detect.resume={folder / 'checkpoint.pt'}")
    assert code == 0, err
    assert "at iteration 3" in err and ckpt.read_checkpoint(folder)["iteration"] == 5
    assert not (tmp_path / "outputs").exists()  # no new run folder was made

    code, _, err = run(monkeypatch, capsys, "detect", f"detect.resume={folder}", "detect.iters=6")
    assert code == 0, err
    assert "at iteration 5" in err and ckpt.read_checkpoint(folder)["iteration"] == 6


def test_cfg_shows_the_config_a_resume_continues_with(data_root, tmp_path, monkeypatch, capsys):
    folder, hint = stop_a_run(data_root, tmp_path, monkeypatch, capsys, iters=5)
    code, out, err = run(monkeypatch, capsys, *shlex.split(hint)[1:], "detect.iters=7", "--cfg")
    assert code == 0, err
    shown = yaml.safe_load(out)
    assert shown["detect"]["iters"] == 7 and shown["detect"]["resume"] is True
    assert shown["detect"]["model"]["fpn_channels"] == 16 and shown["data"]["root"] == str(
        data_root
    )
    code, out, err = run(monkeypatch, capsys, "detect", f"detect.resume={folder}", "--cfg")
    assert code == 0 and yaml.safe_load(out)["detect"]["iters"] == 5, err


def test_resume_true_without_out_still_finds_the_matching_run(
    data_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    over = tiny(data_root, "detect.iters=2", "detect.eval=false")
    assert run(monkeypatch, capsys, "detect", *over)[0] == 0
    (found,) = (tmp_path / "outputs" / "detect").iterdir()
    code, _, err = run(monkeypatch, capsys, "detect", *over, "detect.resume=true")
    assert code == 0, err
    assert f"resuming from outputs/detect/{found.name}/checkpoint.pt at iteration 2" in err


def test_resume_where_there_is_no_checkpoint(data_root, tmp_path, monkeypatch, capsys):
    """A folder with no checkpoint (a run stopped before its first): one line, nothing made."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(monkeypatch, capsys, "detect", "--out", "nothing", "detect.resume=true")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "nothing/checkpoint.pt" in err and not (tmp_path / "nothing").exists()
