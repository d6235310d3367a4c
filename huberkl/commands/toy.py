"""`huberkl toy`: the polynomial experiment of Section 5 (Figure 2), exact and GD, with theory."""

from __future__ import annotations

from typing import Annotated

import typer

from huberkl.commands._common import CfgFlag, OutOption, Overrides, setup, undo_on_refusal

NoiseOption = Annotated[
    list[str] | None,
    typer.Option(
        "--noise",
        help="Noise family: laplace, logistic or cauchy; repeat for several (default: all three).",
        show_default=False,
    ),
]
SolverOption = Annotated[
    str | None,
    typer.Option(
        "--solver",
        help="exact (Newton, the loss's own optimum), gd (the paper's gradient descent) or both.",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device", help="auto (CUDA if present), cpu, cuda or cuda:N.", show_default=False
    ),
]
DtypeOption = Annotated[
    str | None, typer.Option("--dtype", help="float32 (default) or float64.", show_default=False)
]


def _extra(
    noise: list[str] | None, solver: str | None, device: str | None, dtype: str | None
) -> list[str]:
    """The options as Hydra overrides (the toy schema checks their values at compose)."""
    extra = []
    if noise:
        extra.append(f"toy.families=[{','.join(noise)}]")
    for key, value in (("solver", solver), ("device", device), ("dtype", dtype)):
        if value is not None:
            extra.append(f"toy.{key}={value}")
    return extra


def toy(
    noise: NoiseOption = None,
    solver: SolverOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    out: OutOption = None,
    cfg: CfgFlag = False,
    overrides: Overrides = None,
) -> None:
    """Figure 2: the optimal Huber α against the label-noise scale, measured and predicted.

    Fits the paper's polynomial (Section 5) to labels with Laplace, Logistic or Cauchy noise over a grid of noise scales, seeds and α, by the exact minimiser (default) and/or the paper's gradient descent, and compares the optimal α with the asymptotic theory. The polynomial is fitted in the Legendre basis on [−δ, δ], which spans the same functions as the monomials and is far better conditioned.

    Writes results.csv, optimal.csv, fit.csv, figure2.png/.pdf and summary.json to --out.
    """
    extra = _extra(noise, solver, device, dtype)
    run_cfg, _ = setup("toy", overrides, cfg, out, extra=extra, writes=False)

    from rich.console import Console
    from rich.table import Table

    from huberkl.toy import grid
    from huberkl.toy.run import run_toy

    # The settings were checked at compose; whether this machine has the device is not a
    # setting's type or range, so it is asked here, still before any folder is made.
    grid.resolve_device(run_cfg.toy.device)
    run_cfg, out_dir = setup("toy", overrides, False, out, extra=extra)
    console = Console()
    summary = run_toy(run_cfg, out_dir, console=console)

    table = Table(title=f"Optimal α against noise scale — {out_dir}")
    for col in ("noise", "solver", "slope", "intercept", "R²", "theory", "at edge", "artef."):
        table.add_column(col, justify="left" if col in ("noise", "solver") else "right")
    for row in summary["fits_table"]:
        r2 = row["r2"]
        table.add_row(
            row["noise"],
            row["solver"],
            f"{row['slope']:.4f}",
            f"{row['intercept']:+.4f}",
            "n/a" if r2 is None or r2 != r2 else f"{r2:.3f}",
            f"{row['theory_slope']:.4f}",
            f"{row['at_edge']}/{row['scales']}",
            f"[red]{row['artefacts']}[/]" if row["artefacts"] else "0",
        )
    console.print(table)
    sec = summary["seconds"]
    fits = summary["fits"]
    line = f"{fits['exact']} exact fits"
    if fits["gd"]:
        line += f", {fits['gd']} GD fits"
    line += (
        f" on {summary['device']} ({summary['dtype']}) in {sec['total']:.1f} s"
        f" (exact {sec['exact']:.1f} s, GD {sec['gd']:.1f} s);"
        f" peak memory {summary['peak_memory_bytes'] / 2**20:.0f} MiB ({summary['peak_memory_kind']})"
    )
    console.print(line)
    if summary["unconverged_exact"]:
        console.print(
            f"[yellow]{summary['unconverged_exact']} exact fits did not meet the convergence test[/]"
        )
    if summary["artefacts"]:
        console.print(
            f"[red]{summary['artefacts']} GD optima are optimiser artefacts[/] (objective gap above toy.artefact_tol)"
        )
    console.print(f"wrote {', '.join(summary['files'])} to {out_dir}")


def register(app: typer.Typer) -> None:
    """Add ``huberkl toy`` to ``app``."""
    app.command("toy")(undo_on_refusal(toy))
