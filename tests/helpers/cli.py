"""Run ``huberkl`` in-process through its console entry point, as a user would."""

from __future__ import annotations

import sys

from huberkl import cli


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``huberkl *args``: (exit code, stdout, stderr), with a wide terminal for rich."""
    monkeypatch.setattr(sys, "argv", ["huberkl", *args])
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERMINAL_WIDTH", "200")
    try:
        code = cli.main() or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
