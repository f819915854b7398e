"""Benchmarks: ``python -m wavelab.bench <name>`` (see ``wavelab/bench/__main__.py``)."""
