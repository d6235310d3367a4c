"""Run every benchmark module, print one table, write outputs/bench/results.json."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

import benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("only", nargs="*", help="module names to run (default: all)")
    parser.add_argument("--out", default="outputs/bench/results.json")
    args = parser.parse_args(argv)
    console = Console()
    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    if args.only:
        names = [n for n in names if any(o in n for o in args.only)]
    rows: list[dict] = []
    for name in names:
        console.rule(name)
        module = importlib.import_module(f"benchmarks.{name}")
        for row in module.run():
            row.setdefault("module", name)
            rows.append(row)
    table = Table(title="huberkl benchmarks (ratios measured in this run)")
    for col in ("benchmark", "baseline", "candidate", "ratio", "target", "ok", "detail"):
        table.add_column(col, overflow="fold")
    failed = 0
    for r in rows:
        ok = r.get("ok")
        failed += ok is False
        ratio = r.get("ratio")
        table.add_row(
            str(r.get("benchmark")),
            str(r.get("baseline", "")),
            str(r.get("candidate", "")),
            f"{ratio:.3g}" if isinstance(ratio, (int, float)) else str(ratio or ""),
            str(r.get("target", "")),
            {True: "[green]yes[/]", False: "[red]NO[/]", None: "-"}[ok],
            str(r.get("detail", "")),
        )
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
