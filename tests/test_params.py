"""Box-loss presets: exact numbers, Table 1, the frameworks' defaults, one schema."""

from __future__ import annotations

import inspect
from fractions import Fraction as F
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from huberkl.errors import InputError
from huberkl.params import (
    COORDS,
    FORMS,
    LOSSES,
    PARAMS_DIR,
    STAGES,
    Preset,
    StageParams,
    available_presets,
    load_preset,
    parse_number,
)

# Table 1 of the paper, copied from its text: λ, α, σx, σy, σw, σh per (preset, stage).
TABLE1 = {
    ("publication", "proposal"): "10 1 1 1 1 1",
    ("publication", "detection"): "10 1 1 1 1 1",
    ("implementation", "proposal"): "1 1/9 1 1 1 1",
    ("implementation", "detection"): "1 1 1/10 1/10 1/5 1/5",
    ("exp-a", "proposal"): "1/4 1 1/20 1/20 1/10 1/10",
    ("exp-a", "detection"): "1/2 1 1/20 1/20 1/10 1/10",
    ("exp-b", "proposal"): "1/2 1 1/20 1/20 1/10 1/10",
    ("exp-b", "detection"): "1 1 1/20 1/20 1/10 1/10",
    ("exp-c", "proposal"): "1/4 1 1/20 1/20 1/10 1/10",
    ("exp-c", "detection"): "1 1 1/20 1/20 1/10 1/10",
}

# docs/FRAMEWORK-DEFAULTS.md: (loss, beta, weight, box-coder weights 1/σ).
FRAMEWORKS = {
    ("torchvision-frcnn", "proposal"): ("huber", "1/9", "1", (1, 1, 1, 1)),
    ("torchvision-frcnn", "detection"): ("huber", "1/9", "1", (10, 10, 5, 5)),
    ("torchvision-retinanet", "proposal"): ("l1", "0", "1", (1, 1, 1, 1)),
    ("detectron-retinanet", "proposal"): ("huber", "0.11", "1", (1, 1, 1, 1)),
    ("detectron2-frcnn", "proposal"): ("l1", "0", "1", (1, 1, 1, 1)),
    ("detectron2-frcnn", "detection"): ("l1", "0", "1", (10, 10, 5, 5)),
    ("mmdet-frcnn", "proposal"): ("l1", "0", "1", (1, 1, 1, 1)),
    ("mmdet-frcnn", "detection"): ("l1", "0", "1", (10, 10, 5, 5)),
}


def test_every_preset_is_covered_and_listed_in_paper_order() -> None:
    names = available_presets()
    assert names[:5] == ["publication", "implementation", "exp-a", "exp-b", "exp-c"]
    assert set(names) == {p for p, _ in TABLE1} | {p for p, _ in FRAMEWORKS}


def test_table1_exactly() -> None:
    for (name, stage), row in TABLE1.items():
        p = load_preset(name).stage(stage)
        lam, alpha, *sigma = (F(v) for v in row.split())
        assert (p.loss, p.lam, p.alpha) == ("huber", lam, alpha), (name, stage)
        assert [p.sigma[c] for c in COORDS] == sigma, (name, stage)
    assert load_preset("publication").form == "huber"  # the publication's λ·H_α
    for name in ("implementation", "exp-a", "exp-b", "exp-c"):
        assert load_preset(name).form == "smooth-l1"


def test_framework_defaults() -> None:
    for (name, stage), (loss, beta, weight, coder) in FRAMEWORKS.items():
        preset = load_preset(name)
        p = preset.stages[stage]
        assert preset.form == "smooth-l1"
        assert (p.loss, p.effective_alpha, p.lam) == (loss, F(beta), F(weight)), (name, stage)
        assert p.box_coder_weights() == tuple(float(w) for w in coder), (name, stage)
        assert p.normaliser, (name, stage)  # worth showing: it changes the effective λ
    assert set(load_preset("torchvision-retinanet").stages) == {"proposal"}  # one stage


def test_torchvision_presets_match_the_installed_torchvision() -> None:
    """Read the numbers from torchvision's own code, so that a new release is noticed."""
    from torchvision.models.detection import retinanet, roi_heads, rpn

    assert "beta=1 / 9" in inspect.getsource(rpn.RegionProposalNetwork.compute_loss)
    assert "beta=1 / 9" in inspect.getsource(roi_heads.fastrcnn_loss)
    assert "bbox_reg_weights = (10.0, 10.0, 5.0, 5.0)" in inspect.getsource(roi_heads.RoIHeads)
    assert "weights=(1.0, 1.0, 1.0, 1.0)" in inspect.getsource(rpn.RegionProposalNetwork)
    assert '_loss_type = "l1"' in inspect.getsource(retinanet.RetinaNetRegressionHead)
    tv = load_preset("torchvision-frcnn")
    assert tv.stage("proposal").alpha == tv.stage("detection").alpha == F(1, 9)


@pytest.mark.parametrize("path", sorted(PARAMS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_yaml_schema(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(data) == {"name", "title", "source", "form", "stages"}
    assert data["name"] == path.stem and data["form"] in FORMS and data["source"]
    assert set(data["stages"]) <= set(STAGES)
    for stage in data["stages"].values():
        assert stage["loss"] in LOSSES
        # Numbers are strings so that 1/9 stays exact (a YAML float would not).
        for key in ("alpha", "lam"):
            assert isinstance(stage[key], str), (path.stem, key)
        assert set(stage["sigma"]) == set(COORDS)
        assert all(isinstance(v, str) for v in stage["sigma"].values())
    assert Preset.from_mapping(data).to_mapping() == {
        k: v for k, v in data.items() if k != "stages"
    } | {"stages": {k: StageParams.from_mapping(v).to_mapping() for k, v in data["stages"].items()}}


def test_hydra_group_composes_to_the_same_presets() -> None:
    """`detect` reads the group through Hydra; `interpret` through PyYAML: they agree."""
    from omegaconf import OmegaConf

    from huberkl import config

    for name in available_presets():
        cfg = config.compose([f"params={name}"])
        composed = Preset.from_mapping(OmegaConf.to_container(cfg.params, resolve=True))
        assert composed == load_preset(name), name
    cfg = config.compose(["params=exp-a", "params.stages.detection.sigma.x=0.05"])
    changed = Preset.from_mapping(OmegaConf.to_container(cfg.params, resolve=True))
    assert changed.stage("detection").sigma["x"] == F(1, 20)  # a float override stays exact


# --------------------------------------------------------------------------- parse_number


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1/9", F(1, 9)), ("0.111", F(111, 1000)), (" 1 / 9 ", F(1, 9)), (1, F(1)), (0.1, F(1, 10)),
     ("1e-2", F(1, 100)), (F(2, 3), F(2, 3)), ("-3/4", F(-3, 4))],
)  # fmt: skip
def test_parse_number(value, expected) -> None:
    assert parse_number(value) == expected


@pytest.mark.parametrize(
    "bad",
    ["1/0", "abc", "", "nan", "inf", True, float("nan"), float("inf"), "1/", "1e400", "-1e400"],
)
def test_parse_number_rejects(bad) -> None:
    with pytest.raises(InputError) as info:
        parse_number(bad, "alpha")
    assert "alpha" in str(info.value) and "\n" not in str(info.value)


@given(st.fractions())
def test_parse_number_round_trips_text(value: F) -> None:
    assert parse_number(str(value)) == value


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("mapping", "named"),
    [
        ({"alpha": "-1"}, "alpha"),
        ({"alpha": "0"}, "loss=l1"),
        ({"lam": "0"}, "lam"),
        ({"sigma": {"x": "0"}}, "sigma_x"),
        ({"sigma": {"z": "1"}}, "'z'"),
        ({"loss": "mse"}, "mse"),
        ({"beta": "1"}, "beta"),
    ],
)
def test_stage_validation(mapping: dict, named: str) -> None:
    with pytest.raises(InputError, match=named):
        StageParams.from_mapping(mapping)


def test_stage_defaults_and_l1() -> None:
    s = StageParams.from_mapping({})
    assert (s.loss, s.alpha, s.lam, s.sigma) == ("huber", 1, 1, {c: 1 for c in COORDS})
    l1 = StageParams.from_mapping({"loss": "l1"})
    assert l1.alpha == 0 and l1.effective_alpha == 0
    assert StageParams.from_mapping({"sigma": "1/10"}).sigma == {c: F(1, 10) for c in COORDS}


def test_preset_validation_and_stage_lookup() -> None:
    with pytest.raises(InputError, match="unknown preset 'nope'"):
        load_preset("nope")
    with pytest.raises(InputError, match="unknown preset"):
        load_preset("../config")
    with pytest.raises(InputError, match="form"):
        Preset.from_mapping({"form": "l2", "stages": {"proposal": {}}})
    with pytest.raises(InputError, match="stages"):
        Preset.from_mapping({"stages": {"rpn": {}}})
    with pytest.raises(InputError, match="unknown preset key"):
        Preset.from_mapping({"stages": {"proposal": {}}, "lam": 1})
    one = load_preset("detectron-retinanet")
    assert one.stage("detection") is one.stage("proposal")  # a one-stage preset serves both
    with pytest.raises(InputError, match="no stage"):
        load_preset("exp-a").stage("head")
