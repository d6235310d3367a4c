"""Box-loss settings (α, λ, σx, σy, σw, σh per stage) as exact fractions.

The presets live in ``conf/params/*.yaml`` (one source of truth for ``interpret`` and
``detect``); numbers there are strings such as ``"1/9"`` so that Table 2 comes out exact.
This module is torch-free and reads YAML directly, because ``interpret`` must start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from huberkl.errors import InputError
from huberkl.paths import CONF_DIR

PARAMS_DIR = CONF_DIR / "params"  # the ``params`` group of the one config directory
COORDS = ("x", "y", "w", "h")
LOSSES = ("huber", "l1", "kl")
FORMS = ("smooth-l1", "huber")
STAGES = ("proposal", "detection")
PAPER_PRESETS = ("publication", "implementation", "exp-a", "exp-b", "exp-c")  # Table 1's order
_FLOAT_MAX = Fraction(sys.float_info.max)


def parse_number(value: Any, name: str = "value") -> Fraction:
    """``"1/9"``, ``"0.111"``, ``1``, ``0.5`` -> exact ``Fraction``; anything else -> InputError."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number or fraction like 1/9, got {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InputError(f"{name} must be a finite number, got {value!r}")
        return Fraction(str(value))
    text = str(value).strip().replace(" ", "")
    try:
        number = Fraction(text)
    except ZeroDivisionError:
        raise InputError(
            f"{name} must be a number or fraction with non-zero denominator, got {text!r}"
        ) from None
    except ValueError:
        raise InputError(
            f"{name} must be a number or fraction like 1/9 or 0.111, got {text!r}"
        ) from None
    if abs(number) > _FLOAT_MAX:  # exact here, but every consumer ends in float64
        raise InputError(f"{name} must be a finite number (|{name}| ≤ 1.8e308), got {text!r}")
    return number


@dataclass(frozen=True)
class StageParams:
    """One stage's box loss: type, transition α (0 = L1), weight λ and target stds σ."""

    loss: str = "huber"
    alpha: Fraction = Fraction(1)
    lam: Fraction = Fraction(1)
    sigma: dict[str, Fraction] = field(default_factory=lambda: {c: Fraction(1) for c in COORDS})
    normaliser: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {'|'.join(LOSSES)}, got {self.loss!r}")
        if self.alpha < 0:
            raise InputError(f"alpha must be >= 0 (0 means an L1 loss), got {self.alpha}")
        if self.loss != "l1" and self.alpha == 0:
            raise InputError(f"alpha must be > 0 for a {self.loss} loss (use loss=l1 for alpha 0)")
        if self.lam <= 0:
            raise InputError(f"lam must be > 0, got {self.lam}")
        if set(self.sigma) != set(COORDS):
            raise InputError(
                f"sigma must have exactly the coordinates x, y, w, h, got {sorted(self.sigma)}"
            )
        for c, s in self.sigma.items():
            if s <= 0:
                raise InputError(f"sigma_{c} must be > 0, got {s}")

    @property
    def effective_alpha(self) -> Fraction:
        """α as the interpretation sees it: an L1 loss is the α -> 0 limit."""
        return Fraction(0) if self.loss == "l1" else self.alpha

    def box_coder_weights(self) -> tuple[float, float, float, float]:
        """torchvision's ``BoxCoder`` weights are 1/σ."""
        return tuple(float(1 / self.sigma[c]) for c in COORDS)  # type: ignore[return-value]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> StageParams:
        unknown = set(data) - {"loss", "alpha", "lam", "sigma", "normaliser"}
        if unknown:
            raise InputError(
                f"unknown stage key(s) {sorted(unknown)}; allowed: loss, alpha, lam, sigma, normaliser"
            )
        sigma_in = data.get("sigma", 1)
        if isinstance(sigma_in, Mapping):
            bad = set(sigma_in) - set(COORDS)
            if bad:
                raise InputError(
                    f"unknown coordinate(s) {sorted(bad)} in sigma; allowed: x, y, w, h"
                )
            sigma = {c: parse_number(sigma_in.get(c, 1), f"sigma_{c}") for c in COORDS}
        else:
            s = parse_number(sigma_in, "sigma")
            sigma = {c: s for c in COORDS}
        loss = str(data.get("loss", "huber"))
        return cls(
            loss=loss,
            alpha=parse_number(data.get("alpha", 0 if loss == "l1" else 1), "alpha"),
            lam=parse_number(data.get("lam", 1), "lam"),
            sigma=sigma,
            normaliser=data.get("normaliser"),
        )

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "loss": self.loss,
            "alpha": str(self.alpha),
            "lam": str(self.lam),
            "sigma": {c: str(self.sigma[c]) for c in COORDS},
        }
        if self.normaliser:
            out["normaliser"] = self.normaliser
        return out


@dataclass(frozen=True)
class Preset:
    """A named set of stage settings and the loss form it is read in."""

    name: str
    stages: dict[str, StageParams]
    form: str = "smooth-l1"
    title: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise InputError(f"form must be one of {'|'.join(FORMS)}, got {self.form!r}")
        bad = set(self.stages) - set(STAGES)
        if bad or not self.stages:
            raise InputError(f"stages must be among {', '.join(STAGES)}, got {sorted(self.stages)}")

    def stage(self, name: str) -> StageParams:
        """The settings of ``name``; a one-stage preset serves both stages."""
        if name in self.stages:
            return self.stages[name]
        if len(self.stages) == 1:
            return next(iter(self.stages.values()))
        raise InputError(
            f"preset {self.name!r} has no stage {name!r}; it has {', '.join(self.stages)}"
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Preset:
        unknown = set(data) - {"name", "title", "source", "form", "stages"}
        if unknown:
            raise InputError(
                f"unknown preset key(s) {sorted(unknown)}; allowed: name, title, source, form, stages"
            )
        stages = {
            str(k): StageParams.from_mapping(v) for k, v in dict(data.get("stages", {})).items()
        }
        return cls(
            name=str(data.get("name", "custom")),
            stages=stages,
            form=str(data.get("form", "smooth-l1")),
            title=str(data.get("title", data.get("name", ""))),
            source=str(data.get("source", "")),
        )

    def to_mapping(self) -> dict[str, Any]:
        """The YAML schema of ``conf/params/*.yaml`` (numbers as exact strings)."""
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "form": self.form,
            "stages": {k: v.to_mapping() for k, v in self.stages.items()},
        }


def available_presets() -> list[str]:
    """Names of the presets in ``conf/params/``, in the paper's order first."""
    names = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
    return [n for n in PAPER_PRESETS if n in names] + [n for n in names if n not in PAPER_PRESETS]


def load_preset(name: str) -> Preset:
    """Read ``conf/params/<name>.yaml``; an unknown name is an InputError listing the known ones."""
    import yaml

    known = available_presets()
    if name not in known:
        raise InputError(f"unknown preset {name!r}; allowed: {', '.join(known)}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: faster
    return Preset.from_mapping(
        yaml.load((PARAMS_DIR / f"{name}.yaml").read_text(encoding="utf-8"), Loader=loader)
    )


def resolve_preset(params: str | Path | Preset | Mapping[str, Any]) -> Preset:
    """A ``Preset`` from a preset name, a preset YAML file, a mapping or a ``Preset``.

    A YAML file holds the schema of ``conf/params/*.yaml`` (``Preset.to_mapping``), or a
    run's resolved config with that schema under ``params``. Read with PyYAML, not
    OmegaConf, so that library users of ``huberkl.detect.apply_params`` import no Hydra.
    """
    if isinstance(params, Preset):
        return params
    if isinstance(params, Mapping):
        return Preset.from_mapping(params)
    if not isinstance(params, (str, Path)):
        raise InputError(
            f"params must be a preset name, a preset YAML path or a Preset, got {type(params).__name__}"
        )
    if isinstance(params, str) and params in available_presets():
        return load_preset(params)
    path = Path(params)
    if not path.is_file():
        raise InputError(
            f"params {str(params)!r} is neither a preset ({', '.join(available_presets())}) "
            "nor an existing preset YAML file"
        )
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"params file {str(path)!r} is not readable YAML: {exc}") from None
    if (
        isinstance(data, Mapping)
        and "stages" not in data
        and isinstance(data.get("params"), Mapping)
    ):
        data = data["params"]
    if not isinstance(data, Mapping):
        raise InputError(f"params file {str(path)!r} must hold a mapping with 'stages'")
    return Preset.from_mapping(data)
