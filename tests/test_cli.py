"""Behaviour every `huberkl` sub-command shares: help, version, --cfg, overrides, exit 2.

Commands run in-process through ``huberkl.cli.main`` (the console entry point, which maps
bad input to one line on stderr and exit code 2); one test runs a real subprocess.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch
import yaml

from huberkl import __version__, cli
from tests.helpers.cli import run


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Run every command from an empty folder so that a default ``outputs/`` would show."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_help_lists_every_subcommand_with_a_one_line_description(monkeypatch, capsys, name):
    module = importlib.import_module(f"huberkl.commands.{name}")
    if "being built" in (module.__doc__ or ""):
        pytest.skip(f"huberkl.commands.{name} is still a placeholder")
    code, out, _ = run(monkeypatch, capsys, "--help")
    assert code == 0
    rows = [line.strip("│ ").split(None, 1) for line in out.splitlines() if line.startswith("│")]
    described = {row[0]: row[1].strip(" │") for row in rows if len(row) == 2}
    assert name in described, out
    assert len(described[name]) > 10, described[name]


def test_version(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "--version")
    assert code == 0
    assert out.strip() == f"huberkl {__version__}"


def test_cfg_prints_the_resolved_config_and_writes_nothing(monkeypatch, capsys, tmp_path):
    code, out, err = run(
        monkeypatch, capsys, "losses", "--cfg", "--alpha", "1/4", "losses.num_points=7", "seed=5"
    )
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["losses"]["alphas"] == [0.25]  # the option, translated to an override
    assert cfg["losses"]["num_points"] == 7  # an explicit override
    assert cfg["seed"] == 5
    assert {"params", "toy", "data", "detect"} <= set(cfg)  # the whole composed config
    assert list(tmp_path.iterdir()) == []


def test_cfg_defaults_are_the_papers_three_alphas(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "losses", "--cfg")
    assert code == 0
    assert yaml.safe_load(out)["losses"]["alphas"] == [0.1, 1.0, 10.0]


@pytest.mark.parametrize("override", ["nosuch.key=1", "losses.nosuch=1", "losses=nosuch"])
def test_unknown_override_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, override):
    code, _, err = run(monkeypatch, capsys, "losses", override)
    assert code == 2
    assert "nosuch" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["-1", "0", "abc", "nan", "inf", "1/0", "", "1e400"])
def test_bad_alpha_option_is_one_line_naming_alpha(monkeypatch, capsys, tmp_path, value):
    code, _, err = run(monkeypatch, capsys, "losses", "--alpha", "1", "--alpha", value)
    assert code == 2
    assert "alpha" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "override", ["losses.alphas=[1,-2]", "losses.alphas=[abc]", "losses.alphas=[]"]
)
def test_bad_alpha_override_is_one_line_naming_alpha(monkeypatch, capsys, tmp_path, override):
    code, _, err = run(monkeypatch, capsys, "losses", override)
    assert code == 2
    assert "alpha" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []  # checked before the output folder is made


def test_unknown_option_is_exit_2_without_traceback(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "losses", "--bogus")
    assert code == 2
    assert "--bogus" in err and "Traceback" not in err


def test_console_entry_point_exit_code_in_a_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "huberkl.cli", "losses", "--alpha", "-0.5"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        encoding="utf-8",
    )
    assert proc.returncode == 2, proc.stderr
    assert "alpha" in one_error_line(proc.stderr)
    assert proc.stdout == ""


def test_a_bug_keeps_its_traceback_and_a_nonzero_code(tmp_path):
    """Only InputError is bad input (exit 2, one line); any other ValueError is a bug."""
    code = (
        "import sys, huberkl.commands.losses as m\n"
        "from huberkl.cli import main\n"
        "def broken(*a, **k):\n"
        "    raise ValueError('an internal inconsistency')\n"
        "m.setup = broken\n"
        "sys.argv = ['huberkl', 'losses']\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        encoding="utf-8",
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" in proc.stderr and "ValueError: an internal inconsistency" in proc.stderr


def test_report_without_a_reproduction_is_bad_input(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "report", "--scale", "smoke")
    assert code == 2
    assert "no reproduction" in one_error_line(err)


def test_report_of_an_unknown_scale_names_the_known_ones(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "report", "--scale", "huge")
    assert code == 2
    assert "scale=huge: no such scale config; allowed: cpu, full, smoke" in one_error_line(err)


@pytest.mark.parametrize(
    "call",
    [
        lambda: __import__("huberkl.losses").losses.huber("abc", 1.0),
        lambda: __import__("huberkl.losses").losses.huber([1.0], 1.0, reduction="avg"),
        lambda: __import__("huberkl.losses").losses.huber(torch.ones(2, dtype=torch.cfloat), 1.0),
        lambda: __import__("huberkl.toy.solvers").toy.solvers.Design.from_matrix(torch.ones(3, 2)),
        lambda: __import__("huberkl.detect.data.datasets").detect.data.datasets.CocoDetection(
            "no", "no.json"
        ),
    ],
    ids=["x-not-a-number", "reduction", "complex", "rank-deficient-design", "missing-annotations"],
)
def test_input_checks_raise_input_error(call):
    """Library input checks raise InputError (still a ValueError for library callers)."""
    from huberkl.errors import InputError

    with pytest.raises(InputError) as err:
        call()
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
