"""The typed config schemas (huberkl/schema.py) and the one compose path (huberkl/config.py).

A bad override is one ``error:`` line naming the key and the value, exit code 2, before any
output folder exists; the schemas leave the resolved default configs as they were.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from huberkl import config, schema
from huberkl.errors import InputError
from tests.helpers.cli import run


def _bad(monkeypatch, capsys, tmp_path, *args: str) -> str:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(monkeypatch, capsys, *args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())  # no folder was made
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        # types, at compose time (Hydra against the dataclass)
        (["detect", "detect.iters=abc"], ["detect.iters", "'abc'", "Integer"]),
        (["toy", "toy.seeds=1.5"], ["toy.seeds", "'1.5'", "Integer"]),
        (["toy", "toy.alpha.relative=maybe"], ["toy.alpha.relative", "maybe", "bool"]),
        (["detect", "detect.optim.lr=fast"], ["detect.optim.lr", "fast", "Float"]),
        (["losses", "losses.dpi=high"], ["losses.dpi", "high", "Integer"]),
        (["losses", "losses.alphas=[1,x]"], ["losses.alphas", "x", "Float"]),
        (["data", "synth", "data.min_size=big"], ["data.min_size", "big", "Float"]),
        # ranges, in __post_init__ right after compose
        (["toy", "toy.seeds=-2"], ["toy.seeds=-2", ">= 1"]),
        (["toy", "toy.threads=0"], ["toy.threads=0", ">= 1 or null"]),
        (["toy", "toy.theta=[1,x]"], ["toy.theta", "finite numbers"]),
        (["toy", "toy.mem_fraction=1.5"], ["toy.mem_fraction=1.5", "(0, 1]"]),
        (["detect", "detect.batch_size=0"], ["detect.batch_size=0", ">= 1"]),
        (["detect", "detect.iters=-1"], ["detect.iters=-1", ">= 0"]),
        (["detect", "detect.threads=0"], ["detect.threads=0", ">= 1 or null"]),
        (["detect", "detect.optim.name=adam"], ["detect.optim.name='adam'", "sgd or adamw"]),
        (["losses", "losses.span=-1"], ["losses.span=-1", "> 0"]),
        (["data", "synth", "data.synth.images=0"], ["data.synth.images=0", "at least 1"]),
        (["interpret", "-p", "exp-a", "params.stages.detection.lam=-1"], ["lam", "> 0"]),
        (["interpret", "-p", "exp-a", "params.stages.detection.lam=abc"], ["lam", "abc"]),
        # a value left missing (data=coco needs data.root), even for --cfg
        (["detect", "--cfg", "detect=coco", "data=coco"], ["data.root", "Missing"]),
        # unknown keys, with and without ``+``
        (["detect", "detect.nope=1"], ["detect.nope", "not in 'DetectSchema'"]),
        (["detect", "+detect.nope=1"], ["detect.nope", "unknown key"]),
        (["toy", "+toy.nope=1"], ["toy.nope", "unknown key"]),
        (["losses", "losses.nope=1"], ["losses.nope", "LossesSchema"]),
        (["data", "synth", "+data.synth.nope=1"], ["data.synth.nope", "unknown key"]),
        (["interpret", "-p", "exp-a", "+params.nope=1"], ["params.nope", "unknown key"]),
        # a group option that does not exist: which override, and the options there are
        (
            ["toy", "toy=nope", "toy.seeds=1"],
            ["error: toy=nope: no such toy config; allowed: paper, smoke"],
        ),
        (["detect", "detect=nope"], ["detect=nope:", "allowed: coco, ", " quick, retinanet"]),
    ],
)
def test_bad_override_is_one_line_naming_the_key(monkeypatch, capsys, tmp_path, args, needles):
    line = _bad(monkeypatch, capsys, tmp_path, *args)
    for needle in needles:
        assert needle in line, line


def test_multirun_checks_every_job_before_launching(monkeypatch, capsys, tmp_path):
    line = _bad(monkeypatch, capsys, tmp_path, "detect", "-m", "detect.iters=2,abc")
    assert "detect.iters" in line and "abc" in line


def test_scale_schema(tmp_path):
    from huberkl.reproduce import load_plan

    assert load_plan("smoke").scale.detect.runs[0].name == "frcnn-publication"
    with pytest.raises(InputError, match=r"scale\.jobs.*Integer"):
        load_plan("cpu", overrides=["scale.jobs=two"])
    with pytest.raises(InputError, match=r"scale\.jobs=0"):
        load_plan("cpu", overrides=["scale.jobs=0"])


def test_every_group_has_its_schema():
    cfg = config.compose([])
    from omegaconf import OmegaConf

    for group in ("toy", "detect", "data", "params", "losses"):
        assert issubclass(OmegaConf.get_type(cfg[group]), schema.GROUPS[group]), group
    plan = config.compose(["scale=full"], config_name="reproduce")
    assert OmegaConf.get_type(plan.scale) is schema.ScaleSchema


def test_optional_keys_stay_absent():
    """The resolved configs (which the reproduction's cache keys hash) gain no schema key."""
    cfg = config.compose([])
    assert "normaliser" not in cfg.params.stages.proposal
    assert set(cfg.data.synth) == {"images", "val_images", "size", "seed", "noise", "noise_scale"}
    coco = config.compose(["data=coco", "data.root=/x"]).data
    assert "synth" not in coco and coco.train_images == "/x/train2017"
    assert isinstance(cfg.toy.cpu_budget_mb, int) and isinstance(cfg.toy.theta[0], int)
    assert [type(t) for t in list(cfg.toy.theta)] == [int] * 6  # numbers, not OmegaConf nodes
    # with them set, they are checked and kept
    cfg = config.compose(["+data.synth.copies=2", "+data.synth.noise_model=targets"])
    assert cfg.data.synth.copies == 2
    with pytest.raises(InputError, match=r"data\.synth\.noise_model='x'"):
        config.compose(["+data.synth.noise_model=x"])


def test_resolved_default_config_text_is_the_yaml_text():
    """Every key of the default composition comes from a YAML file, in the files' order."""
    cfg = config.compose([])
    text = config.to_yaml(cfg)
    for group, name in (("toy", "paper"), ("losses", "figure1"), ("detect", "quick")):
        data = yaml.safe_load(
            (config.CONF_DIR / group / f"{name}.yaml").read_text(encoding="utf-8")
        )
        data.pop("defaults", None)
        assert yaml.safe_load(text)[group] == data, group
    assert re.search(r"^params:\n(  .*\n)+losses:\n(  .*\n)+toy:\n", text, re.M)
    assert text.index("\ndata:") < text.index("\ndetect:") < text.index("\nseed:")


@pytest.mark.parametrize("name", __import__("huberkl.params").params.available_presets())
def test_interpret_fast_path_reads_what_compose_gives(name):
    from omegaconf import OmegaConf

    from huberkl.params import Preset, load_preset

    composed = config.compose([f"params={name}"]).params
    assert Preset.from_mapping(OmegaConf.to_container(composed)) == load_preset(name)


def test_default_preset_comes_from_the_root_config():
    assert config.default_choice("params") == config.compose([]).params.name
    assert config.default_choice("toy") == "paper"


def test_library_callers_get_the_same_checks():
    """``run_toy``/``build_spec`` from Python (no compose): the toy schema still checks."""
    from huberkl.toy.run import build_spec

    toy = yaml.safe_load((config.CONF_DIR / "toy" / "paper.yaml").read_text(encoding="utf-8"))
    spec = build_spec({**toy, "families": ["Cauchy"]})
    assert spec.families == ["cauchy"] and len(spec.seeds) == toy["seeds"]
    with pytest.raises(InputError, match=r"toy\.seeds=0"):
        build_spec({**toy, "seeds": 0})
    with pytest.raises(InputError, match=r"toy\.n: .*'many'"):
        build_spec({**toy, "n": "many"})
    with pytest.raises(InputError, match="unknown solver 'fast'"):
        build_spec({**toy, "solver": "fast"})


def test_sweep_points_is_the_basic_sweepers_product():
    from huberkl.commands.hydra_app import sweep_points

    jobs = sweep_points(["params=a,b", "seed=1,2", "detect.iters=3", "x='p,q'"])
    assert jobs == [
        ["params=a", "seed=1", "detect.iters=3", "x='p,q'"],
        ["params=a", "seed=2", "detect.iters=3", "x='p,q'"],
        ["params=b", "seed=1", "detect.iters=3", "x='p,q'"],
        ["params=b", "seed=2", "detect.iters=3", "x='p,q'"],
    ]
    assert len(sweep_points(["seed=range(0,3)", "params=choice(a,b)"])) == 6
    with pytest.raises(InputError, match="bad sweep params"):
        sweep_points(["params=glob(*)"])


def test_one_config_directory_and_no_private_hydra_api():
    from huberkl import params

    assert params.PARAMS_DIR == config.CONF_DIR / "params"
    root = Path(config.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "hydra._internal" not in text, path
        if path.name != "paths.py":
            assert '/ "conf"' not in text, path  # no second config-directory constant
        assert "sys.exit(2)" not in text or path.name == "cli.py", path


def test_toy_names_match_the_toy_modules():
    from huberkl.toy import data, grid

    assert schema.TOY_FAMILIES == tuple(data.FAMILIES)
    assert set(schema.TOY_SOLVERS) == {*grid.SOLVERS, "both"}  # both: exact and gd
    for name in schema.TOY_DTYPES:
        grid.resolve_dtype(name)


def _readme_model_options() -> list[str]:
    """Every ``detect.model.KEY=VALUE`` README and the docs write, and each key they name."""
    root = Path(__file__).resolve().parents[1]
    text = "\n".join(
        p.read_text(encoding="utf-8") for p in [root / "README.md", *(root / "docs").glob("*.md")]
    )
    # KEY in ``detect.model.KEY=V`` is a placeholder, not a key: keys are lower case
    written = set(re.findall(r"(?<![+\w.])(detect\.model\.[a-z_0-9]+=[^\s`),]+)", text))
    named = {k for k in re.findall(r"(?<![+\w.])detect\.model\.([a-z_0-9]+)\b", text)}
    examples = {"weights": "COCO_V1", "backbone_weights": "IMAGENET1K_V1", "backbone": "vgg16"}
    named_with_values = {f"detect.model.{k}={examples.get(k, 'null')}" for k in named}
    return sorted(written | named_with_values)


DETECT_CONFIGS = sorted(p.stem for p in (config.CONF_DIR / "detect").glob("*.yaml"))


@pytest.mark.parametrize("name", DETECT_CONFIGS)
def test_readme_model_options_need_no_plus(name):
    """README's ``detect.model.backbone_weights=IMAGENET1K_V1`` (no ``+``) on every detect
    config, whether its YAML lists the key or not; the resolved config gains no other key."""
    options = _readme_model_options()
    assert {"detect.model.backbone_weights=IMAGENET1K_V1", "detect.model.weights=COCO_V1"} <= set(
        options
    ), options
    base = config.compose([f"detect={name}"]).detect.model
    for option in options:
        key, value = option.split("=", 1)
        cfg = config.compose([f"detect={name}", option])
        leaf = key.rsplit(".", 1)[1]
        assert cfg.detect.model[leaf] == yaml.safe_load(value), option
        assert set(cfg.detect.model) == set(base) | {leaf}, option
    both = config.compose(
        [f"detect={name}", "detect.model.weights=COCO_V1", "detect.model.backbone_weights=null"]
    )
    assert both.detect.model.weights == "COCO_V1" and both.detect.model.backbone_weights is None


def test_any_model_field_is_settable_and_unknown_ones_are_refused(monkeypatch, capsys, tmp_path):
    """Every ModelConfig field with or without ``+``; a misspelt one is one line at compose."""
    import dataclasses

    from huberkl.detect.model.detectors import ModelConfig

    assert schema.MODEL_KEYS == tuple(f.name for f in dataclasses.fields(ModelConfig))
    cfg = config.compose(["detect.model.score_thresh=0.3", "+detect.model.nms_thresh=0.4"])
    assert (cfg.detect.model.score_thresh, cfg.detect.model.nms_thresh) == (0.3, 0.4)
    ModelConfig.from_mapping(cfg.detect.model)
    for override in ("detect.model.box_score_thresh=0.3", "+detect.model.nope=1"):
        line = _bad(monkeypatch, capsys, tmp_path, "detect", override)
        key = override.lstrip("+").split("=")[0]
        assert f"error: {key}: unknown key; allowed: arch, backbone" in line, line
    with pytest.raises(InputError, match=r"detect\.model\.nope: unknown key"):
        schema.settings("detect", {"iters": 1, "batch_size": 1, "model": {"nope": 1}})
