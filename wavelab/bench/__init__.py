"""Benchmarks: ``python -m wavelab.bench <name>`` (see ``wavelab/bench/__main__.py``)."""

from __future__ import annotations

import json
from pathlib import Path


def publish(result: dict, table: str, json_path: Path | None) -> None:
    """Prints a benchmark's table and, if asked, writes its full result as JSON."""
    print(table)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {json_path}")


def load_line(env: dict) -> str:
    """The machine's load averages around a benchmark: other processes only ever add time."""
    fmt = lambda xs: " ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    return f"load average (1/5/15 min): before {fmt(env['loadavg_before'])}, after {fmt(env['loadavg_after'])}"
