"""`huberkl interpret`: box-loss settings -> label/prediction noise scales, and back.

Only typer is imported here; the library, rich and (with overrides or ``--cfg``) Hydra are
imported inside the command, so that ``huberkl interpret --preset all`` starts instantly.
"""

from __future__ import annotations

from typing import Annotated

import typer

from huberkl.commands._common import CfgFlag, Overrides
from huberkl.errors import InputError


def _opt(*names: str, help: str) -> object:
    return typer.Option(*names, help=help, show_default=False)


def interpret(
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            "-p",
            help="A preset of conf/params/ (e.g. exp-a), or 'all' (Table 2).",
            show_default=False,
        ),
    ] = None,
    alpha: Annotated[
        str | None, _opt("--alpha", "-a", help="Transition α (beta); 0 = L1. Inverse: default 1.")
    ] = None,
    lam: Annotated[str | None, _opt("--lam", "-l", help="Loss weight λ (default 1).")] = None,
    sigma: Annotated[
        str | None,
        _opt("--sigma", "-s", help="Target stds σ: one value, x,y,w,h, or x=..,w=.. (default 1)."),
    ] = None,
    sigma_x: Annotated[str | None, _opt("--sigma-x", help="σx.")] = None,
    sigma_y: Annotated[str | None, _opt("--sigma-y", help="σy.")] = None,
    sigma_w: Annotated[str | None, _opt("--sigma-w", help="σw.")] = None,
    sigma_h: Annotated[str | None, _opt("--sigma-h", help="σh.")] = None,
    loss: Annotated[str | None, _opt("--loss", help="huber (default) | l1 | kl.")] = None,
    form: Annotated[
        str | None,
        _opt(
            "--form",
            help="smooth-l1: (λ/α)·H_α, the implementation's (default) | huber: λ·H_α, the "
            "publication's. A preset carries its own.",
        ),
    ] = None,
    label_noise: Annotated[
        str | None,
        _opt("--label-noise", help="Inverse: label-noise scale in anchor units (1/20 or wa/20)."),
    ] = None,
    label_noise_x: Annotated[str | None, _opt("--label-noise-x", help="Inverse, x only.")] = None,
    label_noise_y: Annotated[str | None, _opt("--label-noise-y", help="Inverse, y only.")] = None,
    label_noise_w: Annotated[str | None, _opt("--label-noise-w", help="Inverse, w only.")] = None,
    label_noise_h: Annotated[str | None, _opt("--label-noise-h", help="Inverse, h only.")] = None,
    pred_noise: Annotated[
        str | None, _opt("--pred-noise", help="Inverse: prediction-noise scale in anchor units.")
    ] = None,
    pred_noise_x: Annotated[str | None, _opt("--pred-noise-x", help="Inverse, x only.")] = None,
    pred_noise_y: Annotated[str | None, _opt("--pred-noise-y", help="Inverse, y only.")] = None,
    pred_noise_w: Annotated[str | None, _opt("--pred-noise-w", help="Inverse, w only.")] = None,
    pred_noise_h: Annotated[str | None, _opt("--pred-noise-h", help="Inverse, h only.")] = None,
    head: Annotated[
        str | None,
        _opt(
            "--head",
            help="Which head the config fragments set: rpn | roi | retinanet "
            "(default: roi; a preset's stages choose their own).",
        ),
    ] = None,
    config: Annotated[
        bool,
        typer.Option(
            "--fragments", help="Also print torchvision/detectron2/mmdetection config fragments."
        ),
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table | json | csv | markdown.")
    ] = "table",
    overrides: Overrides = None,
    print_cfg: CfgFlag = False,
) -> None:
    """Read α, λ, σ as label- and prediction-noise scales (Sec. 6, Table 2), or invert.

    Examples: [b]huberkl interpret --preset all[/] ·
    [b]huberkl interpret --alpha 1/9 --sigma 1[/] ·
    [b]huberkl interpret --label-noise 1/20 --pred-noise 1/10[/]
    """
    _run(locals())  # InputError: huberkl.cli.main prints it in one line, exit 2


def _run(o: dict) -> None:
    from huberkl import interpret as lib

    if o["fmt"] not in lib.FORMATS:
        raise InputError(f"--format must be one of {'|'.join(lib.FORMATS)}, got {o['fmt']!r}")
    if o["head"] is not None and o["head"] not in lib.HEADS:
        raise InputError(f"--head must be one of {'|'.join(lib.HEADS)}, got {o['head']!r}")
    settings = {
        k: o[k]
        for k in ("alpha", "lam", "sigma", "sigma_x", "sigma_y", "sigma_w", "sigma_h", "loss")
    }
    noise = {k: v for k, v in o.items() if k.startswith(("label_noise", "pred_noise"))}
    forward = any(v is not None for k, v in settings.items() if k != "alpha" and k != "loss")
    inverse = any(v is not None for v in noise.values())
    if inverse and (forward or o["preset"]):
        raise InputError(
            "give either noise scales (--label-noise/--pred-noise) or settings, not both"
        )
    if o["preset"] and (forward or o["alpha"] is not None or o["loss"] is not None):
        raise InputError(
            f"give either --preset {o['preset']} or explicit settings (--alpha/--lam/--sigma/--loss); "
            "change a preset with overrides such as params.stages.detection.lam=1/2"
        )
    if (o["overrides"] or o["print_cfg"]) and (inverse or forward or o["alpha"] or o["loss"]):
        raise InputError("Hydra overrides and --cfg apply to presets only (use --preset NAME)")

    config = o["config"]
    if inverse:
        params = lib.settings_for(
            _coords(lib, noise, "label_noise", "label noise"),
            _coords(lib, noise, "pred_noise", "prediction noise"),
            alpha=o["alpha"],
            form=o["form"] or "smooth-l1",
            loss=o["loss"] or "huber",
        )
        reading = lib.read_stage(params, o["form"] or "smooth-l1", "custom")
        _emit(lib, [(None, [reading])], o["fmt"], config=True, head=o["head"] or "roi")
        return
    if forward or o["alpha"] is not None or o["loss"] is not None:
        params = _custom(lib, o)
        reading = lib.read_stage(params, o["form"] or "smooth-l1", "custom")
        _emit(lib, [(None, [reading])], o["fmt"], config, head=o["head"] or "roi")
        return
    groups = []
    for preset in _presets(o):
        groups.append((preset.name, lib.read_preset(preset, o["form"])))
    _emit(lib, groups, o["fmt"], config, head=o["head"])


def _coords(lib, noise: dict, prefix: str, name: str) -> dict:
    base = (
        lib.parse_coords(noise[prefix], name, scale=True)
        if noise[prefix]
        else dict.fromkeys("xywh")
    )
    for c in "xywh":
        if noise[f"{prefix}_{c}"] is not None:
            base[c] = lib.parse_scale(noise[f"{prefix}_{c}"], f"{name} {c}")
    return base


def _custom(lib, o: dict):
    from fractions import Fraction

    from huberkl.params import StageParams, parse_number

    sigma = lib.parse_coords(o["sigma"] if o["sigma"] is not None else "1", "sigma", Fraction(1))
    for c in "xywh":
        if o[f"sigma_{c}"] is not None:
            sigma[c] = parse_number(o[f"sigma_{c}"], f"sigma_{c}")
    alpha = parse_number(o["alpha"] if o["alpha"] is not None else "1", "alpha")
    loss = o["loss"] or ("l1" if alpha == 0 else "huber")
    return StageParams(
        loss=loss, alpha=alpha, lam=parse_number(o["lam"] or "1", "lam"), sigma=sigma
    )


def _presets(o: dict) -> list:
    """The presets to show: composed by Hydra (the one compose path) when overridden or
    printed with ``--cfg``; else read from ``conf/params/`` with PyYAML.

    The PyYAML path is what keeps ``--preset all`` instant (no Hydra, no torch; budget
    0.5 s, benchmarks/bench_interpret.py): on the 2-core machine at load ~2, a composing
    call (``-p exp-a`` with an override) measured 0.61-0.64 s, ``--preset all`` 0.25 s
    (bench median). It reads the same file that composing ``params=NAME`` puts under ``params``,
    checks it with the same :class:`huberkl.params.Preset` the schema uses
    (tests/test_config_schema.py holds that they agree for every preset), and takes the
    default preset from ``conf/config.yaml`` (:func:`huberkl.config.default_choice`).
    """
    from huberkl.config import default_choice
    from huberkl.params import Preset, available_presets, load_preset

    name = o["preset"]
    if o["overrides"] or o["print_cfg"]:
        if name == "all":
            raise InputError("Hydra overrides and --cfg apply to one preset, not --preset all")
        from omegaconf import OmegaConf

        from huberkl.commands._common import setup

        extra = [f"params={name}"] if name else []
        cfg, _ = setup("interpret", o["overrides"], o["print_cfg"], extra=extra, writes=False)
        return [Preset.from_mapping(OmegaConf.to_container(cfg.params, resolve=True))]
    if name == "all":
        return [load_preset(n) for n in available_presets()]
    return [load_preset(name or default_choice("params"))]


def _emit(lib, groups: list, fmt: str, config: bool, head: str | None) -> None:
    readings = [r for _, rs in groups for r in rs]
    if fmt == "json":
        typer.echo(lib.render_json(groups, config), nl=False)
        return
    if fmt == "csv":
        typer.echo(lib.render_csv(readings), nl=False)
        return
    frags = []
    if config:
        for r in readings:
            h = head if (head and r.preset is None) else lib.head_of(r)
            frags.append((r, h, lib.fragments(r.params, r.form, h)))
    if fmt == "markdown":
        out = lib.render_markdown(groups)
        for r, h, fr in frags:
            out += f"\n**Config for {h} ({lib.stage_label(r)})**\n"
            for name, text in fr.items():
                lang = "yaml" if name == "detectron2" else "python"
                out += f"\n{name}:\n\n```{lang}\n{text}```\n"
        typer.echo(out, nl=False)
        return
    from rich.console import Console

    console = Console(width=max(Console().width, 100 if len(groups) == 1 else 160))
    for table in lib.rich_tables(groups):
        console.print(table)
    for r, h, fr in frags:
        console.rule(f"config for the {h} head ({lib.stage_label(r).lower()})")
        for name, text in fr.items():
            console.print(f"[bold]{name}[/]")
            console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("interpret", no_args_is_help=False)(interpret)
