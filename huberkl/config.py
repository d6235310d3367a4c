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

from hydra import compose as _compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from huberkl import __version__
from huberkl.errors import InputError

CONF_DIR = Path(__file__).resolve().parent / "conf"
OUTPUTS = Path("outputs")


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra overrides (``key=value``)."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = _compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"bad override {' '.join(overrides)!r}: {first}") from None
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


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
