"""Benchmarks: ``make bench`` runs every ``benchmarks/bench_*.py``.

Each module has ``run() -> list[dict]``; a row names the benchmark, the baseline and
candidate measured in the same run, their ``ratio`` (how many times better the candidate
is; > 1 is better), the ``target`` ratio and free-form ``detail``. Absolute times only
appear as detail: machines differ, ratios in one run do not depend on them.
"""
