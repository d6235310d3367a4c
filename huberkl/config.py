"""One place that composes ``conf/`` with Hydra and records a run next to its outputs.

The compose API (not ``@hydra.main``) keeps Typer in charge of the command line; the
price is that Hydra's run directories are ours to make, which :func:`run_dir` does.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from huberkl import __version__
from huberkl.errors import InputError

if TYPE_CHECKING:
    from omegaconf import DictConfig

# The one config directory (YAML shipped as package data): Hydra composes it here and in
# huberkl.detect.hydra_app; huberkl.params reads its presets. Hydra is imported lazily, so
# that importing this constant stays cheap (``huberkl interpret`` loads neither torch nor Hydra).
CONF_DIR = Path(__file__).resolve().parent / "conf"
OUTPUTS = Path("outputs")


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra overrides (``key=value``), checked.

    The one compose path of every command: Hydra checks types and keys against the group
    schemas (:mod:`huberkl.schema`), then :func:`huberkl.schema.check` builds the schema
    objects, whose ``__post_init__`` checks value ranges. Any failure is one
    :class:`InputError` line naming the key.
    """
    from hydra import compose as _compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from huberkl import schema

    schema.register()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = _compose(config_name=config_name, overrides=list(overrides))
        schema.check(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise InputError(schema.describe(exc, overrides)) from None
    return cfg


def default_choice(group: str, config_name: str = "config") -> str:
    """The option ``conf/<config_name>.yaml``'s defaults list picks for ``group``.

    Read with PyYAML, not Hydra, for ``huberkl interpret``'s fast path (no Hydra import):
    the root config stays the one place that says which preset is the default.
    """
    import yaml

    text = (CONF_DIR / f"{config_name}.yaml").read_text(encoding="utf-8")
    for entry in yaml.safe_load(text).get("defaults", []):
        if isinstance(entry, dict) and group in entry:
            return str(entry[group])
    raise KeyError(f"conf/{config_name}.yaml has no default for group {group!r}")


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config; a value still missing (``data.root: ???``) is an InputError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    from huberkl import schema

    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except (MissingMandatoryValue, InterpolationToMissingValueError) as exc:
        raise InputError(schema.describe(exc)) from None


def run_dir(command: str, out: str | Path | None) -> Path:
    """``out`` if given, else a new ``outputs/<command>/<timestamp>`` folder."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = OUTPUTS / command / stamp
        n = 1
        while path.exists():
            path = OUTPUTS / command / f"{stamp}-{n}"
            n += 1
    else:
        path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_run(cfg: DictConfig, out_dir: Path, command: str, overrides: Sequence[str] = ()) -> None:
    """Write ``config.yaml`` (resolved) and ``run.json`` (seed, argv, versions) to rerun exactly."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    info = {
        "command": command,
        "seed": cfg.get("seed"),
        "overrides": list(overrides),
        "argv": sys.argv,
        "huberkl": __version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "cwd": os.getcwd(),
    }
    (out_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def record_run(out_dir: Path, **fields: object) -> None:
    """Add ``fields`` to ``run.json`` (made if missing): what a run found out while it ran."""
    path = Path(out_dir) / "run.json"
    info = {}
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            info = {}
    info.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".run.json.tmp")
    tmp.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
