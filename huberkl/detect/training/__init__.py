"""Training a detector: the run (``train``), its optimiser, loop, log, checkpoints and resume."""
