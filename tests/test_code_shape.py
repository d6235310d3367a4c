"""Readable code: no function in the package is longer than a screenful and a half."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "huberkl"
MAX_LINES = 120


def test_no_function_is_longer_than_120_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(
                        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({n})"
                    )
    assert not long, "functions over 120 lines: " + ", ".join(long)


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The package modules ``module`` imports, lazily or not (a lazy import is a circle too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def test_no_import_circle_in_the_package():
    """Modules form a DAG: each can be read (and tested) knowing only what it imports."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: _imports(p, m, set(files)) for m, p in files.items()}
    # A package imports its own submodules (re-exports); that edge is not a circle.
    for m in graph:
        graph[m] = {d for d in graph[m] if not d.startswith(m + ".")}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    circles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                circles.append(" -> ".join([*path[path.index(d) :], d]))
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "import circles: " + "; ".join(circles)


def test_report_stages_import_only_earlier_stages():
    """The report reads collect -> judge -> render: collecting knows no verdict or Markdown,
    judging no Markdown, and rendering no verdict rule (so each is tested on its own)."""
    report = PACKAGE / "report"
    modules = {f"huberkl.report.{p.stem}" for p in report.glob("*.py")} | {"huberkl.report"}
    later = {
        "collect": {"judge", "render", "theory", "detection", "curve", "sweep", "build"},
        "judge": {"render", "theory", "detection", "curve", "sweep", "build", "reference"},
        "render": {"judge", "theory", "detection", "curve", "sweep", "build", "reference"},
    }
    wrong = []
    for stage, banned in later.items():
        module = f"huberkl.report.{stage}"
        imported = _imports(report / f"{stage}.py", module, modules)
        wrong += [
            f"{stage} imports {m}" for m in sorted(imported) if m.rpartition(".")[2] in banned
        ]
    assert not wrong, "; ".join(wrong)
