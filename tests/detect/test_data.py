"""Reading COCO-format splits: category mapping, crowd/degenerate boxes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from huberkl import config
from huberkl.detect.data import synth
from huberkl.detect.data.datasets import CocoDetection, collate_fn, load_split
from huberkl.errors import InputError
from huberkl.schema import SynthSchema
from tests.helpers.cli import run as _main

CATS = [{"id": 42, "name": "c"}, {"id": 3, "name": "a"}, {"id": 7, "name": "b"}]


def _coco(tmp: Path, anns: list[dict] | None = None, images: list[dict] | None = None) -> Path:
    """Write a small COCO split with sparse category ids; returns the folder."""
    img_dir = tmp / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    images = images or [
        {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 11, "file_name": "b.png", "width": 40, "height": 30},
        {"id": 12, "file_name": "c.png", "width": 40, "height": 30},
    ]
    rng = np.random.default_rng(0)
    for img in images:
        arr = rng.integers(0, 256, (img["height"], img["width"], 3), dtype=np.uint8)
        Image.fromarray(arr).save(img_dir / img["file_name"])
    if anns is None:
        anns = [
            {"id": 1, "image_id": 10, "category_id": 3, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 42, "bbox": [30, 20, 20, 20], "iscrowd": 0},
            {"id": 3, "image_id": 10, "category_id": 7, "bbox": [5, 5, 8, 8], "iscrowd": 1},
            {"id": 4, "image_id": 11, "category_id": 7, "bbox": [5, 5, 1, 8], "iscrowd": 0},
            {"id": 5, "image_id": 11, "category_id": 7, "bbox": [5, 5, 8, 0.5], "iscrowd": 0},
            {"id": 6, "image_id": 11, "category_id": 7, "bbox": [38, 5, 8, 8], "iscrowd": 0},
            {"id": 7, "image_id": 11, "category_id": 42, "bbox": [0, 0, 4, 4]},
        ]  # image 12 has no boxes
    data = {"images": images, "annotations": anns, "categories": CATS}
    (tmp / "ann.json").write_text(json.dumps(data), encoding="utf-8")
    return tmp


@pytest.fixture
def split(tmp_path) -> Path:
    return _coco(tmp_path)


def test_categories_map_to_contiguous_labels_and_back(split):
    ds = CocoDetection(split / "img", split / "ann.json")
    assert ds.num_classes == 3 and ds.cat_ids == [3, 7, 42]
    assert ds.category_names == ["a", "b", "c"]
    for label in range(1, 4):
        assert ds.cat_id_to_label(ds.label_to_cat_id(label)) == label
    for cat in (3, 7, 42):
        assert ds.label_to_cat_id(ds.cat_id_to_label(cat)) == cat
    with pytest.raises(InputError, match="label 0"):
        ds.label_to_cat_id(0)
    with pytest.raises(InputError, match="category id 5"):
        ds.cat_id_to_label(5)


def test_crowd_ignored_degenerate_skipped_and_counted(split):
    ds = CocoDetection(split / "img", split / "ann.json")
    assert ds.ids == [10, 11, 12]
    # crowd: ann 3; degenerate: w=1 (ann 4), h=0.5 (ann 5), x clipped to 38..40 is 2 px wide: kept.
    assert ds.skipped == {"crowd": 1, "degenerate": 2, "empty_images": 0}
    _, t10 = ds[0]
    torch.testing.assert_close(t10["boxes"], torch.tensor([[1.0, 2, 11, 7], [30, 20, 40, 30]]))
    torch.testing.assert_close(t10["labels"], torch.tensor([1, 3]))
    assert t10["image_id"] == 10
    _, t11 = ds[1]
    torch.testing.assert_close(t11["boxes"], torch.tensor([[38.0, 5, 40, 13], [0, 0, 4, 4]]))
    torch.testing.assert_close(t11["labels"], torch.tensor([2, 3]))
    stats = ds.stats()
    assert stats["boxes"] == 4 and stats["boxes_per_class"] == {"a": 1, "b": 1, "c": 2}
    assert stats["images_without_boxes"] == 1


def test_min_size_is_the_degenerate_threshold(split):
    ds = CocoDetection(split / "img", split / "ann.json", min_size=4.0)
    assert ds.skipped["degenerate"] == 4  # also the 2-px clipped box and the 4x4 box


def test_empty_images_kept_for_eval_dropped_for_training(split):
    ds = CocoDetection(split / "img", split / "ann.json")
    image, target = ds[2]
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
    assert image.shape == (3, 30, 40)
    train = CocoDetection(split / "img", split / "ann.json", train=True)
    assert train.ids == [10, 11] and train.skipped["empty_images"] == 1


def test_image_tensor_matches_the_png(split):
    ds = CocoDetection(split / "img", split / "ann.json")
    image, _ = ds[0]
    ref = torch.from_numpy(np.array(Image.open(split / "img" / "a.png"))).permute(2, 0, 1)
    assert image.dtype == torch.float32
    torch.testing.assert_close(image, ref.float() / 255)


def test_collate_keeps_lists(split):
    ds = CocoDetection(split / "img", split / "ann.json")
    images, targets = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_fn)))
    assert isinstance(images, list) and len(images) == 3
    assert [t["image_id"] for t in targets] == [10, 11, 12]
    assert collate_fn([]) == ([], [])


def test_hflip_is_deterministic_and_flips_boxes(split):
    plain = CocoDetection(split / "img", split / "ann.json", train=True)
    ds = CocoDetection(split / "img", split / "ann.json", train=True, hflip=True, seed=1)
    flips = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            image, target = ds[i]
            again, target2 = ds[i]
            torch.testing.assert_close(image, again)
            torch.testing.assert_close(target["boxes"], target2["boxes"])
            ref_image, ref = plain[i]
            flipped = not torch.equal(image, ref_image)
            flips.append(flipped)
            if flipped:
                torch.testing.assert_close(image, ref_image.flip(-1))
                b = ref["boxes"]
                expect = torch.stack([40 - b[:, 2], b[:, 1], 40 - b[:, 0], b[:, 3]], dim=1)
                torch.testing.assert_close(target["boxes"], expect)
    assert 0 < sum(flips) < len(flips)


def test_reads_a_synthesized_set_without_skips(tmp_path):
    paths = synth.synthesize(tmp_path, SynthSchema(images=4, val_images=2, size=64))
    cfg = config.compose([f"data.root={tmp_path}"])
    train, val = load_split(cfg.data, "train"), load_split(cfg.data, "val")
    assert train.train and not val.train
    assert len(train) == 4 and len(val) == 2 and val.num_classes == len(synth.CLASSES)
    assert train.skipped == {"crowd": 0, "degenerate": 0, "empty_images": 0}
    gt = json.loads(paths["val_ann"].read_text(encoding="utf-8"))["annotations"]
    _, target = val[0]
    xywh = [a["bbox"] for a in gt if a["image_id"] == target["image_id"]]
    expect = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in xywh], dtype=torch.float32)
    torch.testing.assert_close(target["boxes"], expect)


# --- bad input: one line naming the file, exit code 2 through the CLI -----------------------


def _break(tmp: Path, how: str) -> tuple[Path, Path, str]:
    """A broken split; returns (image dir, annotation file, the file the error must name)."""
    root = _coco(tmp)
    ann, img = root / "ann.json", root / "img"
    data = json.loads(ann.read_text(encoding="utf-8"))
    if how == "missing image file":
        (img / "b.png").unlink()
        return img, ann, str(img / "b.png")
    if how == "missing image folder":
        return root / "nope", ann, str(root / "nope")
    if how == "missing annotation file":
        return img, root / "nope.json", str(root / "nope.json")
    if how == "malformed JSON":
        ann.write_text(ann.read_text(encoding="utf-8")[:-5], encoding="utf-8")
    elif how == "not COCO":
        ann.write_text(json.dumps({"images": []}), encoding="utf-8")
    elif how == "empty split":
        data["images"], data["annotations"] = [], []
    elif how == "unknown category":
        data["annotations"][1]["category_id"] = 99
    elif how == "unknown image":
        data["annotations"][1]["image_id"] = 99
    elif how == "bad bbox":
        data["annotations"][0]["bbox"] = [1, 2, 3]
    if how not in ("malformed JSON", "not COCO"):
        ann.write_text(json.dumps(data), encoding="utf-8")
    return img, ann, str(ann)


BROKEN = {
    "missing image file": "image file missing",
    "missing image folder": "image folder not found",
    "missing annotation file": "annotation file not found",
    "malformed JSON": "malformed JSON at line 1",
    "not COCO": "missing or non-list COCO key 'annotations'",
    "empty split": "empty split",
    "unknown category": "unknown category_id 99",
    "unknown image": "unknown image_id 99",
    "bad bbox": "bad bbox",
}


@pytest.mark.parametrize("how", list(BROKEN))
def test_bad_input_raises_naming_the_file(tmp_path, how):
    img, ann, name = _break(tmp_path, how)
    with pytest.raises((InputError, FileNotFoundError)) as info:
        CocoDetection(img, ann)
    msg = str(info.value)
    assert msg.startswith(name) and BROKEN[how] in msg and "\n" not in msg


def test_training_split_without_any_box_is_empty(tmp_path):
    root = _coco(tmp_path, anns=[])
    assert len(CocoDetection(root / "img", root / "ann.json")) == 3
    with pytest.raises(InputError, match="empty split"):
        CocoDetection(root / "img", root / "ann.json", train=True)


def test_unreadable_image_names_the_file(split):
    (split / "img" / "a.png").write_bytes(b"not a png")
    ds = CocoDetection(split / "img", split / "ann.json")
    with pytest.raises(InputError, match="a.png: cannot read image"):
        ds[0]


@pytest.mark.parametrize(
    "how", ["missing image file", "malformed JSON", "empty split", "unknown category"]
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, how):
    img, ann, name = _break(tmp_path, how)
    code, _, err = _main(
        monkeypatch, capsys, "data", "check", "--images", str(img), "--ann", str(ann)
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {name}") and BROKEN[how] in lines[0]


def test_cli_check_prints_the_counts(split, monkeypatch, capsys):
    args = ["data", "check", "--images", str(split / "img"), "--ann", str(split / "ann.json")]
    code, out, err = _main(monkeypatch, capsys, *args, "--decode")
    assert code == 0, err
    assert "skipped degenerate boxes" in out and "category id 42" in out


def test_closing_the_train_loader_stops_its_persistent_workers(split):
    """Workers ignore SIGTERM, so interpreter exit (which sends SIGTERM and waits) would hang
    on them (2 of 3 short runs did): training closes them first."""
    import multiprocessing

    from huberkl.detect import dist
    from huberkl.detect.data import loaders

    train_set = CocoDetection(split / "img", split / "ann.json", train=True)
    info = dist.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    data = loaders.train_loader(train_set, info, batch_size=2, workers=1, seed=0)
    next(iter(data.loader))
    workers = list(data.loader._iterator._workers)
    assert workers and all(w.is_alive() for w in workers)
    data.close()
    assert not any(w.is_alive() for w in workers)
    assert not [p for p in multiprocessing.active_children() if p in workers]
    data.close()  # twice is harmless
