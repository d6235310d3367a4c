"""Figure 1 (`huberkl.figure1` and `huberkl losses`): files, layout and plotted values."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import torch
import yaml
from torch.testing import assert_close

from huberkl import figure1
from huberkl import losses as L
from huberkl.errors import InputError
from huberkl.schema import LossesSchema

ALPHAS = [0.1, 1.0, 10.0]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return figure1.compute(LossesSchema(ALPHAS, span=3.0, num_points=21))


def test_table_layout(table):
    assert list(table.columns) == list(figure1.COLUMNS)
    assert len(table) == 3 * 21
    assert table["alpha"].drop_duplicates().tolist() == ALPHAS  # rows in the order asked
    for a in ALPHAS:
        x = table.loc[table["alpha"] == a, "x"]
        assert x.min() == pytest.approx(-3 * a) and x.max() == pytest.approx(3 * a)
        assert (x == 0).any()  # odd point count samples x = 0


def test_table_values_agree_with_losses(table):
    for a in ALPHAS:
        t = table[table["alpha"] == a]
        x = torch.tensor(t["x"].to_numpy(), dtype=torch.float64)

        def col(name: str, t: pd.DataFrame = t) -> torch.Tensor:
            return torch.tensor(t[name].to_numpy(), dtype=torch.float64)

        assert_close(col("huber"), L.huber(x, a))
        assert_close(col("lower"), L.kl_loss(x, a, 1 / a))  # D_{α,1/α}
        assert_close(col("upper"), L.kl_loss(x, a / 2, 1 / a))  # D_{α/2,1/α}
        assert_close(col("d_huber"), x.clamp(-a, a))
        assert_close(col("d_lower"), L.kl_loss_grad(x, a, 1 / a))
        assert_close(col("d_upper"), L.kl_loss_grad(x, a / 2, 1 / a))
        # what the figure shows: the lower curve under H_α, the upper one above it
        assert bool((col("lower") <= col("huber") * (1 + 1e-13)).all())
        assert bool((col("huber") <= col("upper") * (1 + 1e-13)).all())


def test_common_x_range(table):
    t = figure1.compute(LossesSchema([0.5, 2.0], num_points=5, x_max=4.0))
    assert t.groupby("alpha")["x"].agg(["min", "max"]).values.tolist() == [[-4.0, 4.0]] * 2


def test_write_creates_files_whose_csv_round_trips(tmp_path, table):
    settings = LossesSchema(ALPHAS, span=3.0, num_points=21, formats=["png", "pdf"], dpi=40)
    paths = figure1.write(tmp_path, settings)
    assert set(paths) == {"csv", "png", "pdf"}
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["pdf"].read_bytes()[:5] == b"%PDF-"
    back = pd.read_csv(paths["csv"])
    pd.testing.assert_frame_equal(back, table, check_exact=True)  # CSV keeps every digit


def test_pdf_is_reproducible(tmp_path):
    settings = LossesSchema([1.0], num_points=5, formats=["pdf"])
    a = figure1.write(tmp_path / "a", settings)["pdf"].read_bytes()
    b = figure1.write(tmp_path / "b", settings)["pdf"].read_bytes()
    assert a == b


def test_layout_one_row_per_alpha(monkeypatch, tmp_path, table):
    """Rows per α, two columns (losses, derivatives), three curves in each panel."""
    from matplotlib.figure import Figure

    made = []
    original = Figure.subplots

    def spy(self, *args, **kwargs):
        axes = original(self, *args, **kwargs)
        made.append(axes)
        return axes

    monkeypatch.setattr(Figure, "subplots", spy)
    figure1.plot(table, tmp_path / "f", LossesSchema(formats=["png"], dpi=30))
    (axes,) = made
    assert axes.shape == (3, 2)
    assert axes[0, 0].get_title() == "Loss Functions" and axes[0, 1].get_title() == "Derivatives"
    for row, a in enumerate(ALPHAS):
        for col, name in enumerate(["huber", "d_huber"]):
            lines = axes[row, col].get_lines()
            data = [line for line in lines if len(line.get_xdata()) == 21]
            assert len(data) == 3
            t = table[table["alpha"] == a]
            assert_close(
                torch.tensor(data[0].get_ydata(), dtype=torch.float64),
                torch.tensor(t[name].to_numpy(), dtype=torch.float64),
            )


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"alphas": [1.0, -1.0]}, "alphas"),
        ({"alphas": [float("nan")]}, "alphas"),
        ({"alphas": ["a"]}, "alphas"),
        ({"alphas": []}, "alphas"),
        ({"alphas": "1"}, "alphas"),  # a string is not a list of numbers
        ({"alphas": [True]}, "alphas"),
        ({"num_points": 1}, "num_points"),
        ({"num_points": 5.0}, "num_points"),
        ({"num_points": True}, "num_points"),
        ({"span": 0.0}, "span"),
        ({"x_max": -1.0}, "x_max"),
        ({"formats": ["gif"]}, "formats"),
        ({"formats": "png"}, "formats"),
        ({"formats": []}, "formats"),
        ({"dpi": 0}, "dpi"),
        ({"dpi": 72.5}, "dpi"),
        ({"dpi": True}, "dpi"),
    ],
)
def test_bad_settings_raise_value_error_naming_them(tmp_path, kwargs, name):
    """The checks live in LossesSchema (the one home of the settings): a bad value is an
    InputError (a ValueError) naming ``losses.<name>`` before anything is written."""
    with pytest.raises(ValueError, match=rf"^losses\.{name}=") as info:
        figure1.write(tmp_path, LossesSchema(**{"num_points": 5, **kwargs}))
    assert isinstance(info.value, InputError) and "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_defaults_are_the_schemas_and_the_yaml_agrees(tmp_path):
    """``compute()`` with no settings is the LossesSchema default, which conf/losses/figure1.yaml
    repeats key for key (the config file documents each value)."""
    from dataclasses import asdict

    from huberkl import config

    conf = yaml.safe_load((config.CONF_DIR / "losses" / "figure1.yaml").read_text(encoding="utf-8"))
    assert conf == asdict(LossesSchema())
    t = figure1.compute()
    assert t["alpha"].drop_duplicates().tolist() == ALPHAS and len(t) == 3 * 401


def test_losses_command_writes_figure_csv_config_and_seed(tmp_path, monkeypatch, capsys):
    from huberkl import cli

    out = tmp_path / "fig"
    argv = ["huberkl", "losses", "--alpha", "0.1", "--alpha", "1", "--alpha", "10"]
    argv += ["--out", str(out), "losses.num_points=9", "losses.dpi=30", "seed=3"]
    monkeypatch.setattr(sys, "argv", argv)
    cli.main()
    names = {p.name for p in out.iterdir()}
    assert {"figure1.png", "figure1.pdf", "figure1.csv", "config.yaml", "run.json"} <= names
    cfg = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert cfg["losses"]["alphas"] == ALPHAS and cfg["losses"]["num_points"] == 9
    assert (
        cfg["seed"] == 3 and json.loads((out / "run.json").read_text(encoding="utf-8"))["seed"] == 3
    )
    csv = pd.read_csv(out / "figure1.csv")
    expected = figure1.compute(LossesSchema(ALPHAS, num_points=9))
    pd.testing.assert_frame_equal(csv, expected, check_exact=True)
    # rich wraps a long path at the console's width (a deeper tmp path under xdist)
    assert "figure1.png" in capsys.readouterr().out.replace("\n", "")
