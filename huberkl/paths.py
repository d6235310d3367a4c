"""Where the package's configs are and where results go: a leaf module (imports nothing of
huberkl), so that the presets (:mod:`huberkl.params`) and the compose path
(:mod:`huberkl.config`) both read it without importing each other."""

from __future__ import annotations

from pathlib import Path

# The one config directory (YAML shipped as package data): Hydra composes it in
# huberkl.config (and so huberkl.commands.hydra_app); huberkl.params reads its presets directly.
CONF_DIR = Path(__file__).resolve().parent / "conf"
OUTPUTS = Path("outputs")  # results, relative to where a command runs
