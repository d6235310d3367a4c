"""Files read and written the same on every OS: UTF-8 named explicitly, POSIX links.

The report and configs contain α, σ, λ: with the platform's default encoding (cp1252 on
Windows) they fail to write or read back, so every text I/O call names its encoding.
"""

from __future__ import annotations

import ast
import ntpath
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("huberkl", "benchmarks", "tests")
# ``X.open`` that are not text files: images, archives.
NOT_TEXT = {"Image", "tarfile", "zipfile", "gzip", "bz2", "lzma", "io"}
SUBPROCESS = {"run", "Popen", "check_output", "check_call", "call"}


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _binary(mode: ast.expr | None) -> bool:
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and "b" in mode.value


def flagged(node: ast.AST) -> bool:
    """Whether this call is text-mode I/O that leaves the encoding to the platform."""
    if not isinstance(node, ast.Call) or _kw(node, "encoding") is not None:
        return False
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    if name in {"read_text", "write_text"}:
        return True
    if name == "open":
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        pos = 1 if isinstance(f, ast.Name) else 0  # builtin open(file, mode); Path.open(mode)
        mode = node.args[pos] if len(node.args) > pos else _kw(node, "mode")
        return owner not in NOT_TEXT and not _binary(mode)
    if name == "NamedTemporaryFile":
        mode = _kw(node, "mode") or (node.args[0] if node.args else None)
        return mode is not None and not _binary(mode)
    if name in SUBPROCESS:
        text = _kw(node, "text") or _kw(node, "universal_newlines")
        return isinstance(text, ast.Constant) and text.value is True
    return False


def text_io_without_encoding(tree: ast.AST) -> list[int]:
    """Line numbers of text-mode I/O calls that leave the encoding to the platform."""
    return sorted(node.lineno for node in ast.walk(tree) if flagged(node))


def _sources() -> list[Path]:
    return sorted(p for d in SCANNED for p in (REPO / d).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_text_io_names_utf8(path):
    lines = text_io_without_encoding(ast.parse(path.read_text(encoding="utf-8")))
    assert not lines, f"{path.relative_to(REPO)}: text I/O without encoding= at lines {lines}"


def test_the_scanner_finds_what_it_should():
    src = (
        "p.read_text()\np.write_text(s)\nopen(f)\nopen(f, 'w')\np.open()\n"
        "subprocess.run(a, text=True)\n"
        "open(f, 'rb')\np.open('wb')\nImage.open(f)\np.read_text(encoding='utf-8')\n"
        "subprocess.run(a, text=True, encoding='utf-8')\n"
    )
    assert text_io_without_encoding(ast.parse(src)) == [1, 2, 3, 4, 5, 6]


def test_report_links_use_posix_separators_on_windows(monkeypatch, tmp_path):
    from huberkl.report import files

    fake_os = types.SimpleNamespace(path=ntpath, sep="\\", cpu_count=lambda: 2)
    monkeypatch.setattr(files, "os", fake_os)
    link = files.link(Path("C:/out/runs/frcnn-exp-a"), Path("C:/out"))
    assert link == "runs/frcnn-exp-a"
