"""Benchmarks: ``python -m wavelab.bench <name>`` (see ``wavelab/bench/__main__.py``)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf

from wavelab.core.errors import ConfigError
from wavelab.core.user_files import output_file, write_output

log = logging.getLogger("wavelab.bench")
T = TypeVar("T")


# The benchmarks' whole-number keys and their least values (threads may also be null).
COUNTS = {"steps": 1, "warmup": 0, "repeats": 1, "threads": 1}


def check_count(key: str, value, minimum: int) -> None:
    """ConfigError naming ``key`` unless ``value`` is a whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value} is invalid: need a whole number >= {minimum}")


def check_settings(values: Mapping) -> None:
    """ConfigError naming the first bad benchmark key among ``values``: a bench config, or a
    benchmark's Settings as a dict. Light on purpose: the entry checks before importing torch."""
    for key, minimum in COUNTS.items():
        if key in values and not (key == "threads" and values[key] is None):
            check_count(key, values[key], minimum)
    if "models" in values and not values["models"]:
        raise ConfigError("models=[] is invalid: name at least one conf/model option")
    path = values.get("data_path")
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"data_path={path} is invalid: no such file")
    if values.get("json") is not None:
        output_file(str(values["json"]), "json")


def settings_from(cls: type[T], cfg: DictConfig) -> T:
    """A benchmark's Settings dataclass from its config: each field from the key of its name
    (lists as tuples)."""
    values = {f.name: cfg[f.name] for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if OmegaConf.is_list(v) else v for k, v in values.items()})


def publish(result: dict, table: str, json_path: str | Path | None) -> None:
    """Prints a benchmark's table and, if asked, writes its full result as JSON."""
    print(table)
    if json_path is not None:
        write_output(Path(json_path), (json.dumps(result, indent=2) + "\n").encode(), "json")
        log.info("wrote %s", json_path)


def load_line(env: dict) -> str:
    """The machine's load averages around a benchmark: other processes only ever add time."""
    fmt = lambda xs: " ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    return f"load average (1/5/15 min): before {fmt(env['loadavg_before'])}, after {fmt(env['loadavg_after'])}"
