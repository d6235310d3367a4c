"""The one Markdown table writer of the package (interpret, summarize and the report use it).

Torch- and rich-free, so that light commands stay fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _cell(value: Any) -> str:
    """A cell's text, with ``|`` escaped so that it cannot split the cell."""
    return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table, one line per row, ending with a newline."""
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"
