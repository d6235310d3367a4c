"""Typer sub-commands. Each module has ``register(app)``, imports only light modules at
import time (typer, rich) and loads torch/matplotlib inside the command body, so that
``huberkl --help`` and ``huberkl interpret`` start fast. ``hydra_app`` is the ``hydra.main``
entry that ``huberkl detect -m`` hands its sweeps to (Hydra's launchers import it)."""
