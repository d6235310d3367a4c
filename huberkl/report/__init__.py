"""The reproduction report: ``outputs/report.md`` and ``.html`` from the steps' outputs.

Every number in the report is read from a file a ``huberkl`` command wrote; the report
prints that command and links its resolved config, so each number can be remade.

collect (read the records) -> judge (the verdict rules) -> render (Markdown, HTML), run by
:func:`build_report`; :func:`export_reference` makes the committed, portable copy.
"""

from __future__ import annotations

from huberkl.report.build import build_report
from huberkl.report.reference import export_reference, portable

__all__ = ["build_report", "export_reference", "portable"]
