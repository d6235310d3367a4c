"""``benchmarks/gpu_check.py`` at tiny size on the CPU: every part runs and the record has
the keys the README's GPU figures are read from (a GPU run uses the same code, full size)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_check

# every part of the GPU check, tiny: make test-integration
pytestmark = pytest.mark.integration

KEYS = {
    "device": str,
    "torch": str,
    "cuda": str,
    "date": str,
    "toy_grid_exact_s": float,
    "gd_fit_steps_per_s": float,
    "frcnn_steps_per_s": float,
    "retinanet_steps_per_s": float,
    "coco_frcnn_800_steps_per_s": float,
    "coco_retinanet_800_steps_per_s": float,
}


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_tiny_check_runs_every_part_and_writes_the_record(tmp_path, one_thread):
    path = gpu_check.main(["--tiny", "--device", "cpu", "--out", str(tmp_path)])
    assert path.parent == tmp_path and path.name.endswith("-tiny.json")
    record = json.loads(path.read_text(encoding="utf-8"))
    for key, kind in KEYS.items():
        assert isinstance(record[key], kind), (key, record[key])
    assert record["tiny"] is True and set(record["part_seconds"]) == {"toy", "gd", "detect"}
    assert record["toy_grid_exact_s"] > 0 and record["gd_fit_steps_per_s"] > 0
    toy = record["toy"]
    assert toy["fits"] == 3 * 3 * 9 * 3 and toy["unconverged"] == 0
    agree = toy["cpu_agreement"]  # CPU against itself here: another chunking, same rounding
    assert agree["max_rel_objective_diff"] < 1e-5 and agree["max_abs_test_rmse_diff"] < 1e-4
    gd = record["gd"]
    assert 0 < gd["fraction_of_copy_bandwidth"] and gd["nominal_bandwidth_bytes_per_s"] is None
    for name in gpu_check.DETECT:
        entry = record["detect"][name]
        assert entry["errors"] == {}, entry["errors"]  # channels_last and compile both ran
        assert set(entry["ratio_to_plain"]) == {"channels_last", "compile"}
        assert all(r > 0 for r in entry["ratio_to_plain"].values())
        assert record[f"{name}_steps_per_s"] == entry["steps_per_s"]["plain"] > 0


def test_a_part_run_keeps_the_other_parts(tmp_path, one_thread):
    path = gpu_check.main(["--tiny", "--device", "cpu", "--out", str(tmp_path), "--only", "gd"])
    first = json.loads(path.read_text(encoding="utf-8"))
    gpu_check.main(["--tiny", "--device", "cpu", "--out", str(tmp_path), "--only", "toy"])
    both = json.loads(path.read_text(encoding="utf-8"))
    assert both["gd"] == first["gd"] and both["gd_fit_steps_per_s"] == first["gd_fit_steps_per_s"]
    assert both["toy_grid_exact_s"] > 0 and set(both["part_dates"]) == {"gd", "toy"}


def test_variants_choose_what_runs_besides_plain(tmp_path, one_thread):
    args = ["--tiny", "--device", "cpu", "--out", str(tmp_path), "--only", "detect"]
    path = gpu_check.main([*args, "--variants", "channels_last", "--name", "Run 2"])
    assert path.name.endswith("-run-2-tiny.json")
    record = json.loads(path.read_text(encoding="utf-8"))
    for name in gpu_check.DETECT:
        entry = record["detect"][name]
        assert set(entry["steps_per_s"]) == {"plain", "channels_last"}
        assert set(entry["ratio_to_plain"]) == {"channels_last"}
    with pytest.raises(SystemExit) as exc:
        gpu_check.main([*args, "--variants", "fast"])
    assert exc.value.code == 2


def test_unknown_part_is_refused(tmp_path):
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--tiny", "--device", "cpu", "--out", str(tmp_path), "--only", "toy,fast"])
    assert exc.value.code == 2
    assert not list(tmp_path.iterdir())
