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
