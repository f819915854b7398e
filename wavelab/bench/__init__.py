"""Benchmarks: ``python -m wavelab.bench <name>`` (see ``wavelab/bench/__main__.py``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from wavelab.errors import ConfigError

log = logging.getLogger("wavelab.bench")


def check_count(key: str, value, minimum: int) -> None:
    """ConfigError naming ``key`` unless ``value`` is a whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value} is invalid: need a whole number >= {minimum}")


def check_common(steps, warmup, threads) -> None:
    """The keys every benchmark has (``threads=null``: torch's default)."""
    check_count("steps", steps, 1)
    check_count("warmup", warmup, 0)
    if threads is not None:
        check_count("threads", threads, 1)


def publish(result: dict, table: str, json_path: str | Path | None) -> None:
    """Prints a benchmark's table and, if asked, writes its full result as JSON."""
    print(table)
    if json_path is not None:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
        log.info("wrote %s", json_path)


def load_line(env: dict) -> str:
    """The machine's load averages around a benchmark: other processes only ever add time."""
    fmt = lambda xs: " ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    return f"load average (1/5/15 min): before {fmt(env['loadavg_before'])}, after {fmt(env['loadavg_after'])}"
