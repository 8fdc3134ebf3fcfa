"""Scripts that print figures about harness, and tables/ (the shipped benchmark of record).

Run one from the repository root as ``python -m benchmarks.NAME [options]`` (or
``python benchmarks/NAME.py``); ``python -m benchmarks`` lists them, ``python -m benchmarks NAME
[options]`` runs one. What they share is in :mod:`benchmarks.common`.
"""
