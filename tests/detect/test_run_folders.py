"""No user mistake or interruption leaves a broken folder behind.

* An ``--out`` that cannot be written is one line ``error: ...`` naming it, exit code 2, in
  every command (tests run as root, who may write into a chmod'd folder: "read-only" is
  simulated by ``os.access`` here, and is real in the test that runs as ``nobody``).
* A command that refuses its input leaves no folder holding a lone ``config.yaml`` and
  ``run.json``; a folder that was there before keeps what it held.
* ``data synth`` writes beside ``--out`` and moves the set into place when complete.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from huberkl import config
from huberkl.errors import InputError
from tests.helpers.cli import run
from tests.helpers.detect_tiny import TINY_RUN

TINY = [
    *TINY_RUN,
    "detect.iters=1",
    "detect.eval=false",
]
SMALL_SET = ["--images", "3", "--val-images", "1", "--size", "64"]


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory) -> Path:
    """A tiny run's folder (one iteration), for evaluate and predict."""
    from huberkl.detect.training import train as training

    out = tmp_path_factory.mktemp("run")
    training.train(config.compose([f"data.root={data_root}", *TINY]), out)
    return out


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def one_error_line(err: str, alone: bool = True) -> str:
    """The one ``error:`` line of stderr (``alone``: and nothing else, e.g. no progress)."""
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert not alone or len(lines) == 1, err
    return errors[0]


# --------------------------------------------------------------------- an unwritable --out


def _commands(data_root: Path, trained: Path) -> dict[str, list[str]]:
    """Each command with ``OUT`` where its --out goes; all would succeed with a good one."""
    image = data_root / "images" / "val" / "000001.png"
    return {
        "losses": ["losses", "--out", "OUT"],
        "toy": ["toy", "--out", "OUT", "toy=smoke"],
        "noise": ["noise", "--iou-agreement", "0.85", "--out", "OUT"],
        "data synth": ["data", "synth", "--out", "OUT", *SMALL_SET],
        "data show": ["data", "show", "--out", "OUT", "--n", "2", f"data.root={data_root}"],
        "detect train": ["detect", "--out", "OUT", f"data.root={data_root}", *TINY],
        "detect evaluate": ["detect", "evaluate", "--checkpoint", str(trained), "--out", "OUT"],
        "detect predict": ["detect", "predict", str(image), "--checkpoint", str(trained)]
        + ["--out", "OUT"],
        "report": ["report", "--out", "OUT"],
        "detect sweep": ["detect", "-m", "--out", "OUT", "params=exp-a,exp-b", *TINY],
    }


COMMANDS = list(_commands(Path("d"), Path("t")))
KINDS = ("an existing file", "a path under a file", "a read-only folder", "under a read-only one")


def _bad_out(kind: str, tmp_path: Path, monkeypatch) -> Path:
    afile = tmp_path / "afile"
    afile.write_text("keep", encoding="utf-8")
    if kind == "an existing file":
        return afile
    if kind == "a path under a file":
        return afile / "sub"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)  # read-only for anyone but root; os.access says so for root too:
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path).absolute() == ro.absolute() and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return ro if kind == "a read-only folder" else ro / "sub" / "deeper"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_out_is_one_line_and_exit_2(
    command, kind, data_root, trained, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "reproduce" / "cpu").mkdir(parents=True)  # for `report`
    out = _bad_out(kind, tmp_path, monkeypatch)
    before = tree(tmp_path)
    args = [str(out) if a == "OUT" else a for a in _commands(data_root, trained)[command]]
    code, _, err = run(monkeypatch, capsys, *args)
    line = one_error_line(err)
    assert code == 2 and str(out) in line, err
    assert tree(tmp_path) == before  # nothing made, the file untouched


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path, monkeypatch, capsys):
    """Past the check (a file system that refuses anyway): mkdir's OSError is the message."""
    monkeypatch.setattr(config, "check_writable", lambda path, what="--out": Path(path))
    (tmp_path / "afile").write_text("keep", encoding="utf-8")
    code, _, err = run(monkeypatch, capsys, "losses", "--out", str(tmp_path / "afile" / "x"))
    assert code == 2 and "afile/x: cannot make the folder" in one_error_line(err)

    target = tmp_path / "denied"
    mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, _, err = run(monkeypatch, capsys, "noise", "--iou-agreement", "0.9", "--out", str(target))
    line = one_error_line(err)
    assert code == 2 and str(target) in line and "Permission denied" in line


def _as_nobody_works() -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(
        [*_NOBODY, sys.executable, "-c", "import huberkl"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.integration
@pytest.mark.skipif(not _as_nobody_works(), reason="needs root and setpriv to run as nobody")
def test_a_really_read_only_folder_as_an_ordinary_user():
    """Not simulated: ``nobody`` against a chmod 0555 folder (root would write into it)."""
    base = Path(tempfile.mkdtemp(prefix="huberkl-ro-"))
    try:
        base.chmod(0o755)
        ro = base / "ro"
        ro.mkdir(mode=0o555)
        ro.chmod(0o555)
        env = {**os.environ, "HOME": str(base), "MPLCONFIGDIR": str(base)}
        for args, out in (
            (["losses", "--out"], ro / "figures"),
            (["noise", "--iou-agreement", "0.85", "--out"], ro),
            (["data", "synth", *SMALL_SET, "--out"], ro / "set"),
        ):
            done = subprocess.run(
                [*_NOBODY, sys.executable, "-m", "huberkl.cli", *args, str(out)],
                cwd=base,
                env=env,
                capture_output=True,
                text=True,
                encoding="utf-8",
                timeout=120,
            )
            assert done.returncode == 2, done.stderr[-2000:]
            assert str(out) in one_error_line(done.stderr)
        assert list(ro.iterdir()) == []
    finally:
        (base / "ro").chmod(0o755)
        shutil.rmtree(base)


# ------------------------------------------------------------- a refusal leaves no folder


def test_refusals_leave_no_half_made_folder(data_root, trained, tmp_path, monkeypatch, capsys):
    """The issue's list: noise, evaluate, detect, predict and data show refusing their input."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"  # not a set: the trainer refuses to synthesise into it
    mine.mkdir()
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    cases = {
        "noise": ["noise", "missing.json", "--reference", "gold.json"],
        "detect": ["detect", f"data.root={mine}", *TINY],
        "evaluate": ["detect", "evaluate", "--checkpoint", str(trained), f"data.root={mine}"],
        "show": ["data", "show", f"data.root={tmp_path / 'nowhere'}"],
        "predict": [
            "detect",
            "predict",
            str(data_root / "images" / "val" / "000001.png"),
            "--checkpoint",
            str(trained),
            "--ann",
            str(tmp_path / "no-such-ann.json"),
        ],
    }
    before = tree(tmp_path)
    for name, args in cases.items():
        for out in (["--out", "o/deep"], []):  # a new folder, and the default one
            code, _, err = run(monkeypatch, capsys, *args, *out)
            assert code == 2, (name, err)
            one_error_line(err, alone=False)  # detect says its run folder first
            assert tree(tmp_path) == before, (name, out, sorted(tree(tmp_path)))
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "o").exists()


def test_a_refusal_keeps_a_users_folder_as_it_was(data_root, tmp_path, monkeypatch, capsys):
    """--out at a folder the user made: it keeps its files, gains none."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine", encoding="utf-8")
    (folder / "config.yaml").write_text("my own: config\n", encoding="utf-8")
    before = tree(tmp_path)
    code, _, err = run(
        monkeypatch, capsys, "detect", "--out", str(folder), f"data.root={mine}", *TINY
    )
    assert code == 2 and "notes.txt" in one_error_line(err, alone=False)
    assert tree(tmp_path) == before


def test_a_refused_resume_puts_the_runs_record_back(tmp_path, monkeypatch, capsys):
    """A run whose data went away: the resume is refused, its config.yaml and run.json kept."""
    from huberkl.detect.data.synth import synthesize
    from huberkl.schema import SynthSchema

    own = synthesize(tmp_path / "own", SynthSchema(images=8, size=64, seed=0, val_images=4))["root"]
    out = tmp_path / "run"
    over = [f"data.root={own}", *TINY]
    code, _, err = run(monkeypatch, capsys, "detect", "--out", str(out), *over)
    assert code == 0, err
    shutil.rmtree(own / "annotations")
    shutil.rmtree(own / "images")
    (own / "notes.txt").write_text("moved the set away", encoding="utf-8")
    before = tree(out)
    code, _, err = run(
        monkeypatch, capsys, "detect", "--out", str(out), "detect.resume=true", "detect.iters=2"
    )
    assert code == 2 and "notes.txt" in one_error_line(err, alone=False)
    assert tree(out) == before


def test_undo_only_what_this_invocation_made(tmp_path):
    """config.undo_on_refusal: folders made go, a folder with results stays, files come back."""
    cfg = config.compose([])
    with pytest.raises(InputError), config.undo_on_refusal():
        made = config.run_dir("x", tmp_path / "a" / "b" / "c")
        config.save_run(cfg, made, "x")
        config.record_run(made, found="something")
        (made / "images").mkdir()  # an empty folder made before the refusal
        raise InputError("refused")
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(InputError), config.undo_on_refusal():
        made = config.run_dir("x", tmp_path / "kept")
        config.save_run(cfg, made, "x")
        (made / "metrics.json").write_text("{}", encoding="utf-8")  # a result: keep it all
        raise InputError("refused after work")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [
        "config.yaml",
        "metrics.json",
        "run.json",
    ]

    users = tmp_path / "users"
    users.mkdir()
    (users / "run.json").write_text('{"mine": 1}\n', encoding="utf-8")
    with pytest.raises(InputError), config.undo_on_refusal():
        config.save_run(cfg, config.run_dir("x", users), "x")
        raise InputError("refused")
    assert tree(users) == {"run.json": b'{"mine": 1}\n'}

    with config.undo_on_refusal():  # no refusal: everything stays
        done = config.run_dir("x", tmp_path / "done")
        config.save_run(cfg, done, "x")
    assert (done / "config.yaml").is_file()


# ----------------------------------------------------------------------------- data synth


def _images(root: Path, split: str = "train") -> list[str]:
    return sorted(p.name for p in (root / "images" / split).iterdir())


def _temps(root: Path) -> list[Path]:
    return sorted(root.parent.glob(f".{root.name}.synth-*"))


def test_interrupted_synth_leaves_nothing_and_a_rerun_needs_no_force(tmp_path, monkeypatch, capsys):
    from huberkl.detect.data import synth

    out = tmp_path / "D"
    render, calls = synth.render_image, []

    def ctrl_c_at_the_fifth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return render(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(synth, "render_image", ctrl_c_at_the_fifth)
        code, _, err = run(m, capsys, "data", "synth", "--out", str(out), "--images", "20")
    assert code == 130, err
    assert not out.exists() and _temps(out) == []

    code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", str(out), *SMALL_SET)
    assert code == 0, err
    assert _images(out) == ["000001.png", "000002.png", "000003.png"]
    assert sorted(p.name for p in out.iterdir()) == [
        "annotations",
        "config.yaml",
        "images",
        "run.json",
    ]


def test_killed_synth_leaves_no_set_and_its_temporary_folder_is_cleaned(
    tmp_path, monkeypatch, capsys
):
    """SIGKILL (no cleanup can run): the set folder does not exist; the next run tidies up."""
    out = tmp_path / "D"
    cmd = [sys.executable, "-m", "huberkl.cli", "data", "synth", "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--images", "20000", "--val-images", "1", "--size", "64"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            drawn = [p for t in _temps(out) for p in (t / "images" / "train").glob("*.png")]
            if len(drawn) >= 5:
                break
            time.sleep(0.1)
        else:
            pytest.fail("data synth drew no images in 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert not out.exists() and len(_temps(out)) == 1  # the half-drawn set is beside, hidden

    code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", str(out), *SMALL_SET)
    assert code == 0, err
    assert _images(out) == ["000001.png", "000002.png", "000003.png"]
    assert _temps(out) == []


def test_an_incomplete_set_needs_force_and_force_drops_its_stale_images(
    tmp_path, monkeypatch, capsys
):
    """What an interrupted run of an older version left: images, no annotations."""
    out = tmp_path / "D"
    (out / "images" / "train").mkdir(parents=True)
    for i in range(1, 290):
        (out / "images" / "train" / f"{i:06d}.png").write_bytes(b"stale")
    code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", str(out), *SMALL_SET)
    line = one_error_line(err)
    assert code == 2 and "incomplete set" in line and "--force" in line and str(out) in line
    assert len(_images(out)) == 289

    code, _, err = run(
        monkeypatch, capsys, "data", "synth", "--out", str(out), *SMALL_SET, "--force"
    )
    assert code == 0, err
    assert _images(out) == ["000001.png", "000002.png", "000003.png"]
    assert (out / "images" / "train" / "000001.png").read_bytes() != b"stale"


def test_synth_keeps_other_files_and_force_replaces_the_whole_set(tmp_path, monkeypatch, capsys):
    """A reproduction step's folder (stdout.txt) is written into; --force leaves no old copy."""
    out = tmp_path / "D"
    out.mkdir()
    (out / "stdout.txt").write_text("log", encoding="utf-8")
    first = [*SMALL_SET, "--noise", "laplace", "--noise-scale", "0.1", "--copies", "2"]
    code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", str(out), *first)
    assert code == 0, err
    assert (out / "annotations" / "instances_train_copy2.json").is_file()
    code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", str(out), *SMALL_SET)
    assert code == 2 and "already holds a set" in one_error_line(err)

    again = ["--images", "2", "--val-images", "1", "--size", "64", "--force"]
    code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", str(out), *again)
    assert code == 0, err
    assert _images(out) == ["000001.png", "000002.png"]
    assert sorted(p.name for p in (out / "annotations").iterdir()) == [
        "instances_train.json",
        "instances_train_clean.json",
        "instances_val.json",
    ]
    assert (out / "stdout.txt").read_text(encoding="utf-8") == "log"
    assert "images: 2" in (out / "config.yaml").read_text(encoding="utf-8")
    assert _temps(out) == []


def test_report_never_empties_a_users_folder_given_as_reference(tmp_path, monkeypatch, capsys):
    """``--reference`` is replaced whole when exported: a folder of other files is refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "reproduce" / "cpu").mkdir(parents=True)
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "draft.tex").write_text("mine", encoding="utf-8")
    before = tree(tmp_path)
    code, _, err = run(monkeypatch, capsys, "report", "--reference", str(papers))
    line = one_error_line(err)
    assert code == 2 and str(papers) in line and "report.md" in line
    assert tree(tmp_path) == before


def test_summarize_refuses_an_unwritable_out(tmp_path, monkeypatch, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep", encoding="utf-8")
    code, _, err = run(
        monkeypatch, capsys, "detect", "summarize", str(tmp_path), "--out", str(afile)
    )
    assert code == 2 and str(afile) in one_error_line(err)
    assert afile.read_text(encoding="utf-8") == "keep"
