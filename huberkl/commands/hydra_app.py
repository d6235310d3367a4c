"""The ``hydra.main`` entry that ``huberkl detect --multirun`` hands its sweep to.

An entry point beside the commands (:mod:`huberkl.commands.detect` calls :func:`multirun`),
not library code: each job trains through :func:`huberkl.detect.training.train.train`.

Going through ``hydra.main`` (instead of looping over overrides ourselves) is what makes
Hydra's launcher plugins work: the same sweep runs in-process (``basic``), as local
subprocesses (``hydra/launcher=submitit_local``) or as SLURM jobs
(``hydra/launcher=submitit_slurm``)::

    huberkl detect -m params=publication,implementation,exp-a,exp-b,exp-c
    huberkl detect -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu \\
        hydra.launcher.gpus_per_node=1 detect=coco data=coco data.root=/datasets/coco \\
        params=implementation,exp-a,exp-b,exp-c

Each job trains in its own folder (``hydra.sweep.dir``/``hydra.sweep.subdir``, set in
``conf/config.yaml``) and writes config.yaml and run.json there, as every command does.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from omegaconf import DictConfig

from huberkl import schema
from huberkl.config import CONF_DIR

# At import, so that launcher processes (submitit) that unpickle ``main`` know the schemas.
schema.register()


# An absolute path: a relative one from inside a package makes Hydra look for a package
# ``huberkl.conf`` (which has no __init__.py, being plain YAML shipped as package data).
@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """One sweep job: train and score; returns AP so that optimising sweepers can use it."""
    from hydra.core.hydra_config import HydraConfig

    from huberkl import config
    from huberkl.detect import dist
    from huberkl.detect.training import runs, train

    schema.check(cfg)  # ranges (multirun checked every job already; this covers __main__)
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    if dist.from_env()[0] == 0:
        runs.check_out_dir(cfg, out_dir)  # a job folder holding a run is not overwritten
        config.save_run(cfg, out_dir, "detect", list(hc.overrides.task))
    result = train.train(cfg, out_dir)
    return result.metrics.get("AP")


def _parse(overrides: Sequence[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from huberkl.errors import InputError

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise InputError(f"bad override: {str(exc).strip().splitlines()[0]}") from None


def sweep_points(overrides: Sequence[str]) -> list[list[str]]:
    """The override lists of every job of the sweep: the Cartesian product of the swept
    values, in the basic sweeper's order (first key slowest), from Hydra's public parser."""
    from hydra.errors import HydraException

    from huberkl.errors import InputError

    choices = []
    for o in _parse(overrides):
        key = o.get_key_element()
        try:
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else None
        except HydraException as exc:  # glob() needs the config loader: not supported here
            raise InputError(f"bad sweep {key}: {str(exc).strip().splitlines()[0]}") from None
        choices.append(
            [f"{key}={v}" for v in values]
            if values is not None
            else [f"{key}={o.get_value_element_as_str()}"]
        )
    return [list(job) for job in itertools.product(*choices)]


def multirun(overrides: Sequence[str], sweep_dir: str | Path | None = None) -> None:
    """Check every job's overrides (one-line errors up front), then run ``main`` with ``-m``.

    Job folders are named by the swept values only (``0-params=exp-a``): the fixed
    overrides are the same for every job and would make names too long for the disk.
    """
    from huberkl import config

    for job in sweep_points(overrides):
        config.compose([o for o in job if not o.startswith("hydra")])  # InputError names it
    # Hydra has no public API that runs a multirun from Python: ``hydra.main`` (which parses
    # sys.argv) is the only public entry to the sweeper and launcher plugins, hence the argv.
    fixed = sorted({o.key_or_group for o in _parse(overrides) if not o.is_sweep_override()})
    keys = ",".join(f"'{k}'" for k in ["hydra.sweep.dir", *fixed])
    args = [*overrides, f"hydra.job.config.override_dirname.exclude_keys=[{keys}]"]
    if sweep_dir is not None:
        args.append(f"hydra.sweep.dir={Path(sweep_dir).resolve()}")
    argv = sys.argv
    sys.argv = ["huberkl-detect", "--multirun", *args]
    try:
        main()
    finally:
        sys.argv = argv


if __name__ == "__main__":
    main()
