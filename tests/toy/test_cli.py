"""`huberkl toy` end to end on the smoke config: files, columns, reproducibility, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from huberkl import config
from huberkl.toy import grid
from huberkl.toy.run import build_spec, run_toy
from tests.helpers.cli import run

SMOKE = ["toy=smoke"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.integration
def test_library_run_writes_every_output(tmp_path):
    cfg = config.compose([*SMOKE, "toy.solver=both"])
    summary = run_toy(cfg, tmp_path / "run", progress=False)
    out = tmp_path / "run"
    for name in (
        "results.csv",
        "optimal.csv",
        "fit.csv",
        "figure2.png",
        "figure2.pdf",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    res = pd.read_csv(out / "results.csv")
    assert list(res.columns) == [
        "noise", "scale", "seed", "alpha", "lr", "solver", "train_objective", "test_rmse", "gap", "converged", "iters",
    ]  # fmt: skip
    spec = build_spec(cfg.toy)
    assert len(res) == 3 * 3 * 9 * 3 + 3 * 3 * 9 * 3 * 2  # exact: F·S·A·seeds; GD: ·lrs·gd seeds
    assert set(res["solver"]) == {"exact", "gd"}
    assert res.loc[res.solver == "exact", "converged"].astype(bool).all()
    gd = res[res.solver == "gd"]
    assert (gd["gap"] >= -1e-5).all()  # GD never beats the exact minimum (float32 rounding)
    assert gd["converged"].astype(bool).tolist() == (gd["gap"] <= 1e-5).tolist()
    opt = pd.read_csv(out / "optimal.csv")
    assert len(opt) == 2 * 3 * 3 and {
        "alpha_opt",
        "alpha_lo",
        "alpha_hi",
        "alpha_theory",
        "artefact",
    } <= set(opt.columns)
    fit = pd.read_csv(out / "fit.csv")
    assert {"slope", "intercept", "r2", "theory_slope"} <= set(fit.columns) and len(fit) == 6
    assert summary["fits"]["exact"] >= 3 * 3 * 9 * 3 and summary["fits"]["gd"] == 3 * 3 * 9 * 3 * 2
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["device"] == "cpu"
    assert spec.n_fits == summary["fits"]["exact"] + summary["fits"]["gd"]


def test_runs_are_reproducible_to_the_bit():
    """Guaranteed only for the same inputs, chunking and thread count on one machine."""
    spec = build_spec(config.compose(SMOKE).toy)
    kw = dict(device=torch.device("cpu"), dtype=torch.float32)
    a = pd.DataFrame(grid.run_grid(spec, **kw).columns)
    b = pd.DataFrame(grid.run_grid(spec, **kw).columns)
    assert a.equals(b)  # every float identical (NaN learning rates of exact rows included)
    other = build_spec(config.compose([*SMOKE, "seed=1"]).toy, base_seed=1)
    assert not pd.DataFrame(grid.run_grid(other, **kw).columns)["test_rmse"].equals(a["test_rmse"])


def test_cli_writes_outputs_and_prints_the_fit_table(monkeypatch, capsys, tmp_path):
    code, out, err = run(
        monkeypatch, capsys, "toy", "--noise", "cauchy", "--noise", "logistic", "--out", "o", *SMOKE
    )
    assert code == 0, err
    assert "cauchy" in out and "logistic" in out and "laplace" not in out
    saved = (Path("o") / "config.yaml").read_text(encoding="utf-8")  # the options became overrides
    assert "- cauchy" in saved and "- laplace" not in saved
    assert set(pd.read_csv("o/optimal.csv")["noise"]) == {"cauchy", "logistic"}


@pytest.mark.integration
def test_threads_come_from_the_config_never_the_load_average(monkeypatch, capsys):
    def no_load_average():
        raise AssertionError("the toy must not read the load average")

    monkeypatch.setattr(os, "getloadavg", no_load_average, raising=False)
    tiny = [*SMOKE, "toy.seeds=1", "toy.alpha.num=3"]
    for out, extra, want in (("a", ["toy.threads=1"], 1), ("b", [], grid.available_cores())):
        code, _, err = run(monkeypatch, capsys, "toy", "--out", out, *tiny, *extra)
        assert code == 0, err
        info = json.loads((Path(out) / "run.json").read_text(encoding="utf-8"))
        assert info["threads"] == want and info["command"] == "toy"  # setup's record, extended
        summary = json.loads((Path(out) / "summary.json").read_text(encoding="utf-8"))
        assert summary["threads"] == want


def test_cfg_prints_the_resolved_config(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "toy", "--cfg", "--solver", "gd", "toy.seeds=5")
    assert code == 0 and "solver: gd" in out and "seeds: 5" in out
    assert not Path("outputs").exists()


NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--noise", "gauss"], "gauss"),
        (["--solver", "fast"], "fast"),
        (["--dtype", "float16"], "float16"),
        (["--device", "cuda:99"], "cuda:99"),
        (["--device", "tpu"], "tpu"),
        (["toy.scales=[0.5,-1]"], "-1"),
        (["toy.scales=[]"], "scale"),
        (["toy.families=[]"], "empty"),
        (["toy.alpha.min=0"], "alpha.min"),
        (["toy.alpha.num=0"], "empty"),
        (
            ["toy.alpha.min=5", "toy.alpha.max=1"],
            "toy.alpha.max=1.0: expected a number > toy.alpha.min",
        ),
        (["toy.alpha.min=2", "toy.alpha.max=2"], "toy.alpha.max=2.0"),
        (["toy.k=0"], "toy.k"),
        (["toy.n=5"], "toy.n"),
        (["toy.seeds=0"], "seeds"),
        (["toy.gd.lrs=[]", "--solver", "gd"], "lrs"),
        (["toy.threads=0"], "toy.threads"),
        (["toy.cpu_budget_mb=0"], "toy.cpu_budget_mb"),
        pytest.param(
            ["--device", "cuda"],
            "no CUDA",
            marks=pytest.mark.skipif(not NO_CUDA, reason="has CUDA"),
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, args, needle):
    code, out, err = run(monkeypatch, capsys, "toy", *SMOKE, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not Path("outputs").exists()  # nothing written


def test_real_entry_point_exit_code(tmp_path):
    exe = Path(sys.executable).with_name("huberkl")
    proc = subprocess.run(
        [str(exe), "toy", "--noise", "normal", *SMOKE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        encoding="utf-8",
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown noise family 'normal'; allowed: laplace, logistic, cauchy"
    ]
