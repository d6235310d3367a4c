"""One look for every progress bar of the long jobs (toy grid, training, reproduction)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(
    label: str,
    *extra: ProgressColumn,
    unit: str = "",
    console: Console | None = None,
    enabled: bool = True,
) -> Progress:
    """``label description [bar] n/total unit elapsed remaining *extra``; ``enabled=False``
    (non-zero DDP ranks, tests) keeps the bar silent."""
    columns: list[ProgressColumn] = [
        TextColumn(
            f"[bold]{label}[/] {{task.description}}" if label else "[bold]{task.description}"
        ),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
    ]
    if unit:
        columns.append(TextColumn(unit))
    columns += [TimeElapsedColumn(), TimeRemainingColumn(), *extra]
    return Progress(*columns, console=console, disable=not enabled, transient=False)
