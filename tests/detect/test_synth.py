"""The synthetic shapes set: exact boxes, determinism, train-only noise of the stated scale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from huberkl.detect.data import synth
from huberkl.errors import InputError
from huberkl.schema import SynthSchema
from tests.helpers.cli import run as _main


def _ann(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _boxes(data: dict) -> np.ndarray:
    return np.array([a["bbox"] for a in data["annotations"]], dtype=np.float64).reshape(-1, 4)


def _extent(mask: np.ndarray) -> list[int]:
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1 - cols[0], int(rows[-1]) + 1 - rows[0]]


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, dict]:
    """The same small set without noise, with Laplace noise, and again (for determinism)."""
    base = tmp_path_factory.mktemp("synth")
    kw = dict(images=40, val_images=6, size=96, seed=3)
    noisy = SynthSchema(noise="laplace", noise_scale=0.1, **kw)
    return {
        "clean": synth.synthesize(base / "clean", SynthSchema(**kw)),
        "laplace": synth.synthesize(base / "laplace", noisy),
        "laplace2": synth.synthesize(base / "laplace2", noisy),
    }


def test_single_shape_box_is_its_pixel_extent():
    seen = set()
    for seed in range(60):
        rgb, objects = synth.render_image(
            np.random.default_rng(seed), 128, texture=False, n_objects=1
        )
        (obj,) = objects
        seen.add(obj["label"])
        assert obj["bbox"] == _extent(rgb.any(axis=2)), (seed, synth.CLASSES[obj["label"]])
        assert obj["area"] == int(rgb.any(axis=2).sum())
    assert seen == set(range(len(synth.CLASSES)))


def test_overlapping_shapes_keep_exact_visible_boxes():
    overlaps = 0
    for seed in range(30):
        rgb, objects = synth.render_image(np.random.default_rng(seed), 128, texture=False)
        masks = np.stack([o["mask"] for o in objects])
        assert masks.sum(axis=0).max() <= 1  # visible masks partition the drawn pixels
        np.testing.assert_array_equal(masks.any(axis=0), rgb.any(axis=2))
        for obj in objects:
            assert obj["bbox"] == _extent(obj["mask"])
            x, y, w, h = obj["bbox"]
            assert 8 <= w <= 64 and 8 <= h <= 64
        boxes = np.array([o["bbox"] for o in objects], dtype=float)
        for i in range(len(boxes)):
            for j in range(i):
                a, b = boxes[i], boxes[j]
                ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
                iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
                overlaps += ix > 0 and iy > 0
    assert overlaps > 0  # real overlap happens


def test_same_arguments_give_identical_files(sets):
    a, b = sets["laplace"]["root"], sets["laplace2"]["root"]
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 40 + 6 + 3
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_other_seed_gives_other_images(tmp_path):
    one = synth.synthesize(tmp_path / "a", SynthSchema(images=2, val_images=1, size=64, seed=0))
    two = synth.synthesize(tmp_path / "b", SynthSchema(images=2, val_images=1, size=64, seed=1))
    png = "000001.png"
    assert (one["train_images"] / png).read_bytes() != (two["train_images"] / png).read_bytes()


def test_coco_layout_and_categories(sets):
    paths = sets["clean"]
    data = _ann(paths["train_ann"])
    assert [c["name"] for c in data["categories"]] == list(synth.CLASSES)
    assert len(data["images"]) == 40 and len(_ann(paths["val_ann"])["images"]) == 6
    for img in data["images"]:
        assert (paths["train_images"] / img["file_name"]).is_file()
        assert (img["width"], img["height"]) == (96, 96)
    ids = [a["id"] for a in data["annotations"]]
    assert ids == list(range(1, len(ids) + 1))


def test_noise_only_on_train_and_clean_json_is_noiseless(sets):
    clean, noisy = sets["clean"], sets["laplace"]
    # Same images whatever the noise, val and clean train boxes identical to the noiseless set.
    for split in ("train_images", "val_images"):
        for png in sorted(clean[split].glob("*.png")):
            assert png.read_bytes() == (noisy[split] / png.name).read_bytes()
    assert _ann(noisy["val_ann"])["annotations"] == _ann(clean["val_ann"])["annotations"]
    assert _ann(noisy["train_clean_ann"])["annotations"] == _ann(clean["train_ann"])["annotations"]
    assert _ann(clean["train_clean_ann"]) == {
        **_ann(clean["train_ann"]),
        "info": _ann(clean["train_clean_ann"])["info"],
    }
    moved = _boxes(_ann(noisy["train_ann"])) - _boxes(_ann(noisy["train_clean_ann"]))
    assert np.abs(moved).min(axis=1).max() > 0  # train boxes did move
    assert _ann(noisy["train_ann"])["info"]["noise"] == "laplace"
    assert _ann(noisy["val_ann"])["info"]["noise"] == "none"


def test_dataset_noise_has_the_stated_scale(sets):
    clean = _boxes(_ann(sets["laplace"]["train_clean_ann"]))
    noisy = _boxes(_ann(sets["laplace"]["train_ann"]))
    size = 96
    c0, c1 = clean[:, :2], clean[:, :2] + clean[:, 2:]
    n0, n1 = noisy[:, :2], noisy[:, :2] + noisy[:, 2:]
    wh = clean[:, 2:]
    rel = np.concatenate([(n0 - c0) / wh, (n1 - c1) / wh]).ravel()
    edges = np.concatenate([n0, n1]).ravel()
    inside = (edges > 0) & (edges < size)  # clipped moves are shorter
    assert inside.sum() > 300
    # Laplace with scale b: E|move| = b = 0.1 box sizes (~4 % standard error here).
    assert 0.08 < np.abs(rel[inside]).mean() < 0.12


@pytest.mark.parametrize("noise", ["laplace", "gaussian"])
def test_perturb_boxes_statistics(noise):
    rng = np.random.default_rng(0)
    n, s = 20000, 0.05
    w = rng.uniform(10, 60, n)
    h = rng.uniform(10, 60, n)
    boxes = np.stack([np.full(n, 500.0), np.full(n, 500.0), w, h], axis=1)
    out = synth.perturb_boxes(boxes, noise, s, rng, 1000, 1000)
    dx0 = (out[:, 0] - boxes[:, 0]) / w
    dy1 = (out[:, 1] + out[:, 3] - 500 - h) / h
    for move in (dx0, dy1):
        if noise == "laplace":
            np.testing.assert_allclose(np.abs(move).mean(), s, rtol=0.03)
            np.testing.assert_allclose(np.median(np.abs(move)), s * np.log(2), rtol=0.05)
        else:
            np.testing.assert_allclose(move.std(), s, rtol=0.03)
        assert abs(move.mean()) < 0.003


def test_perturb_boxes_clips_to_image_and_keeps_order():
    rng = np.random.default_rng(1)
    boxes = np.array([[0.0, 0.0, 20.0, 20.0], [40.0, 40.0, 24.0, 24.0]] * 500)
    out = synth.perturb_boxes(boxes, "laplace", 1.0, rng, 64, 64)
    assert (out >= 0).all() and (out[:, 2:] >= 0).all()
    assert (out[:, 0] + out[:, 2] <= 64 + 1e-9).all() and (out[:, 1] + out[:, 3] <= 64 + 1e-9).all()
    np.testing.assert_array_equal(synth.perturb_boxes(boxes, "none", 1.0, rng, 64, 64), boxes)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"noise": "uniform"}, "noise='uniform'"),
        ({"images": 0}, "images=0"),
        ({"val_images": 0}, "val_images=0"),
        ({"size": 16}, "size=16"),
        ({"size": "big"}, "size='big'"),
        ({"noise_scale": -0.1}, "noise_scale=-0.1"),
        ({"noise_scale": float("nan")}, "noise_scale=nan"),
    ],
)
def test_bad_arguments_raise_one_line(tmp_path, kwargs, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(")) as info:
        synth.synthesize(tmp_path / "x", SynthSchema(**kwargs))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x").exists()


def test_cli_synth_writes_the_set_and_its_config(tmp_path, monkeypatch, capsys):
    out = tmp_path / "set"
    args = ["data", "synth", "--out", str(out), "--images", "3", "--val-images", "2"]
    args += ["--size", "64", "--seed", "5", "--noise", "laplace", "--noise-scale", "0.2"]
    code, _, err = _main(monkeypatch, capsys, *args)
    assert code == 0, err
    info = _ann(out / "annotations" / "instances_train.json")["info"]
    assert {
        k: info[k] for k in ("images", "val_images", "size", "seed", "noise", "noise_scale")
    } == {
        "images": 3,
        "val_images": 2,
        "size": 64,
        "seed": 5,
        "noise": "laplace",
        "noise_scale": 0.2,
    }
    assert len(list((out / "images" / "val").glob("*.png"))) == 2
    assert "noise: laplace" in (out / "config.yaml").read_text(encoding="utf-8")
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["command"] == "data synth"


def test_cli_synth_cfg_shows_the_root(tmp_path, monkeypatch, capsys):
    code, out, _ = _main(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path), "--cfg")
    assert code == 0
    assert f"train_ann: {tmp_path}/annotations/instances_train.json" in out
    assert not (tmp_path / "annotations").exists()


def test_cli_synth_bad_noise_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    code, _, err = _main(
        monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "x"), "--noise", "cauchy"
    )
    assert code == 2
    assert err.strip().splitlines() == [
        "error: data.synth.noise='cauchy': allowed are laplace, gaussian, none"
    ]
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- targets model


@pytest.mark.parametrize("family", ["laplace", "gaussian", "logistic", "cauchy"])
def test_perturb_targets_injects_exactly_the_coded_noise(family):
    from huberkl.distributions import sample
    from huberkl.noise.fit import fit
    from huberkl.noise.matching import encode

    rng = np.random.default_rng(5)
    n = 20000
    clean = np.column_stack([
        rng.uniform(0, 100, n), rng.uniform(0, 100, n), rng.uniform(5, 50, n), rng.uniform(5, 50, n)
    ])  # fmt: skip
    scales = (0.02, 0.04, 0.06, 0.08)
    noisy, redrawn = synth.perturb_targets(clean, family, scales, np.random.default_rng(9))
    # the same draws, by hand: the coded error of the noisy box is exactly s·e, except for
    # the (Cauchy-only) boxes redrawn because a size would not be a finite double
    e = sample(family, 1.0, (n, 4), np.random.default_rng(9)) * np.array(scales)
    kept = np.abs(e[:, 2:]).max(axis=1) < synth.MAX_LOG_FACTOR
    assert redrawn == n - kept.sum() and (redrawn == 0 or family == "cauchy")
    # xywh storage: the centre is recovered as x + w/2, to rounding relative to the new size
    tol = 1e-12 * (1 + np.exp(np.minimum(np.abs(e[:, 2:]), 700)).max(axis=1, keepdims=True))
    assert (np.abs(encode(noisy, clean) - e)[kept] <= tol[kept]).all()
    for j, s in enumerate(scales):  # and it has the family's scipy.stats scale
        assert fit(encode(noisy, clean)[:, j], family).scale == pytest.approx(s, rel=0.05)


def test_perturb_targets_redraws_only_unrepresentable_sizes():
    boxes = np.tile([10.0, 10.0, 20.0, 20.0], (200000, 1))
    noisy, redrawn = synth.perturb_targets(boxes, "cauchy", (0.5,) * 4, np.random.default_rng(0))
    # P(|0.5·e| >= 700) = 2/π·atan(0.5/700) per size coordinate: ~180 of 200000 boxes
    assert 100 < redrawn < 300
    assert np.isfinite(noisy).all() and (noisy[:, 2:] > 0).all()
    assert (noisy[:, 0] < 0).any() and (noisy[:, 0] + noisy[:, 2] > 1000).any()  # not clipped


def test_targets_set_records_its_noise_and_copies(tmp_path):
    kw = dict(images=6, val_images=2, size=64, seed=1)
    paths = synth.synthesize(tmp_path, SynthSchema(
        noise="logistic", noise_model="targets", noise_scales="0.05,0.05,0.1,0.1",
        copies=3, **kw,
    ))  # fmt: skip
    first, third = _ann(paths["train_ann"]), _ann(paths["train_ann_copy3"])
    info = first["info"]
    assert info["noise_model"] == "targets" and info["noise_family"] == "logistic"
    assert info["noise_scales"] == {"x": 0.05, "y": 0.05, "w": 0.1, "h": 0.1}
    assert info["noise"] == "logistic" and info["noise_scale"] == 0.05
    assert "no clipping" in info["noise_description"] and info["noise_redrawn"] == 0
    assert third["info"]["copy"] == 3 and third["images"] == first["images"]
    assert [a["id"] for a in third["annotations"]] == [a["id"] for a in first["annotations"]]
    assert not np.allclose(_boxes(first), _boxes(third))  # independent copies


def test_edges_default_keeps_the_boxes_and_adds_the_model_keys(sets):
    data = _ann(sets["laplace"]["train_ann"])
    info = data["info"]
    assert info["noise_model"] == "edges" and info["noise_family"] == "laplace"
    assert info["noise_scales"] == dict.fromkeys("xywh", 0.1)
    clean = _boxes(_ann(sets["laplace"]["train_clean_ann"]))
    rng = np.random.default_rng(np.random.SeedSequence(3, spawn_key=(synth._NOISE_KEY,)))
    moved = synth.perturb_boxes(clean, "laplace", 0.1, rng, 96, 96)
    np.testing.assert_array_equal(_boxes(data), np.round(moved, 3))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"noise_model": "corners"}, "noise_model='corners'"),
        ({"noise": "cauchy"}, "allowed are laplace, gaussian, none"),
        ({"noise_model": "targets", "noise_scales": "1,2"}, "give 4 numbers"),
        ({"noise_scales": "1,1,1,1"}, "needs noise_model=targets"),
        ({"copies": 0}, "copies=0"),
    ],
)
def test_bad_targets_arguments(kwargs, needle):
    with pytest.raises(InputError, match=needle):
        SynthSchema(**kwargs)


def test_cli_synth_targets_model_and_copies(tmp_path, monkeypatch, capsys):
    out = tmp_path / "set"
    args = [
        "data",
        "synth",
        "--out",
        str(out),
        "--images",
        "3",
        "--val-images",
        "2",
        "--size",
        "64",
    ]
    args += [
        "--noise",
        "cauchy",
        "--noise-model",
        "targets",
        "--noise-scales",
        "0.02,0.03,0.04,0.05",
    ]
    code, _, err = _main(monkeypatch, capsys, *args, "--copies", "2")
    assert code == 0, err
    info = _ann(out / "annotations" / "instances_train_copy2.json")["info"]
    assert info["noise_model"] == "targets" and info["noise_family"] == "cauchy"
    assert info["noise_scales"] == {"x": 0.02, "y": 0.03, "w": 0.04, "h": 0.05}
    assert "noise_model: targets" in (out / "config.yaml").read_text(encoding="utf-8")


def test_default_synth_config_is_unchanged_by_the_optional_keys():
    """The reproduction's cache keys hash the resolved config: the new keys stay optional."""
    from huberkl import config

    synth_cfg = config.compose([]).data.synth
    assert set(synth_cfg) == {"images", "val_images", "size", "seed", "noise", "noise_scale"}


def test_cli_synth_never_overwrites_a_set_without_force(tmp_path, monkeypatch, capsys):
    out = tmp_path / "set"
    base = ["data", "synth", "--out", str(out), "--images", "3", "--val-images", "2"]
    base += ["--size", "64", "--noise", "laplace", "--noise-scale", "0.2"]
    code, _, err = _main(monkeypatch, capsys, *base)
    assert code == 0, err
    train = out / "annotations" / "instances_train.json"
    before = train.read_bytes()
    again = [*base[:-2], "--noise-scale", "0.05"]
    code, _, err = _main(monkeypatch, capsys, *again)
    assert code == 2 and "already holds a set" in err and "noise_scale=0.2" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert train.read_bytes() == before
    code, _, err = _main(monkeypatch, capsys, *again, "--force")
    assert code == 0, err
    assert _ann(train)["info"]["noise_scale"] == 0.05


def test_the_schema_owns_the_defaults_and_the_check():
    """SynthSchema is the one home of synthesize's defaults and checks; conf/data/synth.yaml
    repeats the defaults of the keys it lists and leaves the optional ones out."""
    from dataclasses import asdict, fields

    import yaml

    from huberkl import config

    conf = yaml.safe_load((config.CONF_DIR / "data" / "synth.yaml").read_text(encoding="utf-8"))[
        "synth"
    ]
    defaults = asdict(SynthSchema())
    assert conf == {k: defaults[k] for k in conf}
    assert [f.name for f in fields(SynthSchema) if f.name not in conf] == [
        "noise_model",
        "noise_scales",
        "copies",
    ]
    composed = config.compose(["+data.synth.copies=2"]).data.synth
    assert SynthSchema.from_mapping(composed) == SynthSchema(copies=2)
    with pytest.raises(InputError, match=r"^data\.synth\.nope: unknown key; allowed: images, "):
        SynthSchema.from_mapping({"nope": 1})
    s = SynthSchema(images="3", size=64.0, noise_model="targets", noise_scales="1,2,3,4")
    assert (s.images, s.size, s.noise_scales, s.scales) == (
        3,
        64,
        [1.0, 2.0, 3.0, 4.0],
        [1, 2, 3, 4],
    )
    assert SynthSchema(noise_scale=0.2).scales == [0.2] * 4


def test_trainer_synthesises_the_set_the_command_writes(tmp_path, monkeypatch, capsys):
    """``ensure_dataset`` (the detector's data) and ``huberkl data synth`` build the same
    SynthSchema from ``data.synth``: the same overrides give the same annotation files."""
    from huberkl import config
    from huberkl.detect.data.sets import ensure_dataset

    over = ["data.synth.images=3", "data.synth.val_images=2", "data.synth.size=48"]
    over += ["data.synth.noise=laplace", "+data.synth.copies=2"]
    code, _, err = _main(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "a"), *over)
    assert code == 0, err
    record = ensure_dataset(config.compose([f"data.root={tmp_path / 'b'}", *over]).data)
    assert record["source"] == "synthesised"
    for name in ("instances_train.json", "instances_train_copy2.json", "instances_val.json"):
        a, b = (tmp_path / d / "annotations" / name for d in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), name
