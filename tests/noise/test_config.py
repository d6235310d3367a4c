"""`huberkl noise` composed like every command: the ``noise`` config group and its schema.

Each option is a key of ``conf/noise/default.yaml`` (schema :class:`huberkl.schema.NoiseSchema`),
so Hydra overrides set the same values, ``--cfg`` prints them, the run records them in its
``config.yaml``, and a bad value is one line naming the key (exit code 2, no folder).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import yaml

from huberkl import config, schema
from huberkl.commands.noise import quote, split_arguments
from huberkl.errors import InputError
from huberkl.noise import measure
from huberkl.schema import NoiseSchema
from tests.helpers.cli import run as _main


def _one_error(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_yaml_gives_every_key_with_the_schemas_default():
    """The schema owns the defaults; the config file lists each (with what it means)."""
    conf = yaml.safe_load((config.CONF_DIR / "noise" / "default.yaml").read_text(encoding="utf-8"))
    conf.pop("defaults")
    assert conf == {f.name: f.default for f in fields(NoiseSchema)}


def test_other_commands_get_no_noise_section():
    """``noise: null`` in the root defaults: the other commands' resolved configs (which the
    reproduction's cache keys hash) stay as they were."""
    assert "noise" not in config.compose([])
    cfg = config.compose(["noise=default", "noise.iou_agreement=0.8"])
    assert isinstance(schema.settings("noise", cfg.noise), NoiseSchema)


def test_cfg_prints_the_options_as_keys(monkeypatch, capsys, tmp_path):
    args = ["noise", "--cfg", "--iou-agreement", "0.8", "--family", "logistic", "--no-figure"]
    args += ["--out", str(tmp_path / "o"), "noise.resamples=7", "seed=3"]
    code, out, err = _main(monkeypatch, capsys, *args)
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["noise"]["iou_agreement"] == 0.8 and cfg["noise"]["family"] == "logistic"
    assert cfg["noise"]["resamples"] == 7 and cfg["noise"]["figure"] is False
    assert cfg["noise"]["min_iou"] == NoiseSchema.min_iou and cfg["seed"] == 3
    assert {"params", "detect", "data"} <= set(cfg)  # the root config, as other commands print
    assert not (tmp_path / "o").exists()


def test_an_override_wins_over_its_option(monkeypatch, capsys):
    args = ["noise", "--cfg", "--iou-agreement", "0.8", "--resamples", "5", "noise.resamples=9"]
    code, out, err = _main(monkeypatch, capsys, *args)
    assert code == 0, err
    assert yaml.safe_load(out)["noise"]["resamples"] == 9


def test_override_and_option_give_the_same_run_and_record_it(monkeypatch, capsys, tmp_path):
    runs = {}
    for way, extra in (("option", ["--family", "cauchy"]), ("key", ["noise.family=cauchy"])):
        out = tmp_path / way
        code, stdout, err = _main(
            monkeypatch, capsys, "noise", "--iou-agreement", "0.7", "--format", "json",
            "--out", str(out), *extra,
        )  # fmt: skip
        assert code == 0, err
        runs[way] = stdout
        cfg = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
        assert cfg["noise"]["family"] == "cauchy" and cfg["noise"]["iou_agreement"] == 0.7
        info = json.loads((out / "run.json").read_text(encoding="utf-8"))
        assert info["command"] == "noise" and "noise=default" in info["overrides"]
    assert runs["option"] == runs["key"]
    assert json.loads(runs["key"])["coordinates"]["x"]["family"] == "cauchy"


def test_sources_given_as_keys(monkeypatch, capsys, tmp_path):
    r = np.random.default_rng(4).laplace(0, 0.2, 400)
    csv = tmp_path / "fit.csv"
    csv.write_text("r\n" + "\n".join(map(str, r)) + "\n", encoding="utf-8")
    code, out, err = _main(
        monkeypatch, capsys, "noise", f"noise.residuals={csv}", "noise.resamples=0",
        "noise.format=json", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["source"]["residuals"] == str(csv)
    assert (tmp_path / "o" / "result.json").is_file()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["noise.min_iou=0"], ["noise.min_iou=0.0", "(0, 1]"]),
        (["noise.min_iou=abc"], ["noise.min_iou", "abc"]),
        (["noise.resamples=-1"], ["noise.resamples=-1", ">= 0"]),
        (["noise.resamples=1.5"], ["noise.resamples", "1.5"]),
        (["noise.format=xml"], ["noise.format='xml'", "table|json|csv"]),
        (["noise.reference_kind=both"], ["noise.reference_kind='both'", "gold or peer"]),
        (["noise.family=uniform"], ["noise.family", "'uniform'", "laplace"]),
        (["noise.iou_agreement=1.5"], ["noise.iou_agreement=1.5", "(0, 1]"]),
        (["noise.nope=1"], ["noise.nope", "NoiseSchema"]),
        (["+noise.nope=1"], ["noise.nope", "unknown key"]),
        (["noise.residuals=x.csv"], ["give exactly one of", "noise.residuals"]),
        (["--min-iou", "1.5"], ["noise.min_iou=1.5", "--min-iou must be in (0, 1]"]),
    ],
)
def test_bad_value_is_one_line_naming_the_key(monkeypatch, capsys, tmp_path, args, needles):
    monkeypatch.chdir(tmp_path)
    code, _, err = _main(monkeypatch, capsys, "noise", "--iou-agreement", "0.8", *args)
    line = _one_error(code, err)
    for needle in needles:
        assert needle in line, line
    assert not any(tmp_path.iterdir())  # refused before any folder


def test_annotations_named_like_an_override_or_with_quotes(monkeypatch, capsys, tmp_path):
    """An existing file is ANN.json whatever its name; any path survives the override."""
    from huberkl.detect.data.synth import perturb_targets
    from huberkl.noise.validate import clean_boxes

    rng = np.random.default_rng(0)
    xywh, image, cat = clean_boxes(300, rng)
    monkeypatch.chdir(tmp_path)
    names = {"clean": Path("ref.json"), "noisy": Path("a=b it's ${x}.json")}
    for kind, boxes in (
        ("clean", xywh),
        ("noisy", perturb_targets(xywh, "laplace", (0.05,) * 4, rng)[0]),
    ):
        anns = [
            {"id": i + 1, "image_id": int(image[i]), "category_id": int(cat[i]) + 1,
             "bbox": [float(v) for v in boxes[i]]}
            for i in range(len(boxes))
        ]  # fmt: skip
        names[kind].write_text(json.dumps({"annotations": anns}), encoding="utf-8")
    code, out, err = _main(
        monkeypatch, capsys, "noise", str(names["noisy"]), "-r", "ref.json", "--resamples", "0",
        "--format", "json", "--no-figure", "--out", "o", "noise.min_iou=0.4",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["source"] == {
        "annotations": str(names["noisy"]),
        "reference": "ref.json",
        "reference_kind": "gold",
        "min_iou": 0.4,
    }
    cfg = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text(encoding="utf-8"))
    assert cfg["noise"]["annotations"] == str(names["noisy"]) and cfg["noise"]["min_iou"] == 0.4
    assert (tmp_path / "o" / "params" / "noise-a-b-it-s-x.yaml").is_file()  # named after it


def test_split_arguments_and_quote():
    assert split_arguments(["ann.json", "noise.seed=2", "+x.y=1", "~a.b"]) == (
        "ann.json",
        ["noise.seed=2", "+x.y=1", "~a.b"],
    )
    assert split_arguments(["noise.seed=2"]) == (None, ["noise.seed=2"])
    with pytest.raises(InputError, match="give one ANN.json"):
        split_arguments(["a.json", "b.json"])
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for text in ["a b.json", "it's", "c:\\x\\", "a,b=[c]", "x\\'y", "é.json"]:
        assert parser.parse_override(f"k={quote(text)}").value() == text


def test_library_takes_the_schema_object():
    s = NoiseSchema(iou_agreement=0.8, family="logistic")
    result, name = measure.measure(s)
    direct = measure.from_iou_agreement(0.8, "logistic", "gold")
    assert measure.public(result) == measure.public(direct) and name == "noise-iou-0.8"
    with pytest.raises(InputError, match="give exactly one of"):
        NoiseSchema()
    with pytest.raises(InputError, match=r"noise\.resamples=True"):
        NoiseSchema(iou_agreement=0.8, resamples=True)
