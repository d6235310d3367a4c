"""The reproduction report: ``outputs/report.md`` and ``.html`` from the steps' outputs.

Every number in the report is read from a file a ``huberkl`` command wrote; the report
prints that command and links its resolved config, so each number can be remade.
"""

from __future__ import annotations

from huberkl.report.build import build_report

__all__ = ["build_report"]
