"""`huberkl detect` (being built; registers nothing yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
