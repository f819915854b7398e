"""What the study entries (``retrieval``, ``prior_eval``) score: WavGPT checkpoints, and the
held-out blocks of the data their run was trained on, every one of them or the first N."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from wavelab.core.errors import ConfigError
from wavelab.core.heap import trim_heap
from wavelab.core.user_files import write_output

log = logging.getLogger("wavelab.wavgpt.study")


def ckpt_path_list(cfg: DictConfig, key: str) -> list[str]:
    """``cfg[key]``, one path or a list of them, as a non-empty list of strings."""
    if OmegaConf.is_missing(cfg, key) or cfg[key] is None:
        raise ConfigError(f"{key} is missing: give {key}=[A.ckpt,B.ckpt,...]")
    value = cfg[key]
    paths = [str(p) for p in (value if OmegaConf.is_list(value) else [value])]
    if not paths:
        raise ConfigError(f"{key}=[] is invalid: give at least one WavGPT checkpoint")
    return paths


def checked_count(cfg: DictConfig, key: str, allow_none: bool) -> int | None:
    """``cfg[key]`` as an integer >= 1 (or None where ``allow_none``); ConfigError otherwise."""
    value = cfg.get(key)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "an integer >= 1" + (" or null" if allow_none else "")
        raise ConfigError(f"{key}={value!r} is invalid: must be {allowed}")
    return value


def load_wavgpt_modules(paths: list[str], device: str, key: str) -> dict:
    """{path: WavGPTModule in eval mode}; ConfigError naming ``key`` for anything else."""
    from wavelab.core.checkpoints import load_module
    from wavelab.wavgpt.module import WavGPTModule

    modules = {}
    for path in paths:
        module = load_module(path, map_location=device, key=key)
        if not isinstance(module, WavGPTModule):
            raise ConfigError(
                f"{key}: {path!r} holds a {type(module).__name__}, not a WavGPT checkpoint"
            )
        modules[path] = module.eval()
    return modules


def run_data(ckpt_path: str, key: str, overrides: dict, stage: str):
    """The data module of the run that wrote ``ckpt_path`` (its saved data config, with
    ``overrides`` and never its teacher cache), set up for ``stage``."""
    from wavelab.core.config import instantiate
    from wavelab.core.saved_config import run_data_config

    data_cfg = run_data_config(Path(ckpt_path).expanduser())
    if data_cfg is None:
        raise ConfigError(f"{key}: {ckpt_path!r} has no saved run config beside it")
    data = instantiate(OmegaConf.merge(data_cfg, {**overrides, "teacher_cache": False}), "data")
    data.prepare_data()
    data.setup(stage)
    return data


def held_out_batches(
    ckpt_path: str, max_blocks: int | None, batch_size: int, device: str, key: str
) -> Iterator[dict[str, Tensor]]:
    """The validation blocks of the run that wrote ``ckpt_path`` (its saved data config, never
    its teacher cache), the first ``max_blocks`` evenly spaced ones or (None) all, on
    ``device``; the heap is trimmed after each batch is used (``core.heap``), so a pass over
    thousands of them does not keep what their tensors freed."""
    overrides = {"num_val_blocks": max_blocks, "batch_size": batch_size}
    data = run_data(ckpt_path, key, overrides, "validate")
    for batch in data.val_dataloader():
        yield {k: v.to(device) for k, v in batch.items()}
        trim_heap()  # what the caller freed of this batch goes back to the system


def report(results: dict, table: str, out: Path | None) -> None:
    """Print a study's table, and write its results as JSON to ``out`` (the key ``out=``)."""
    print(table)
    if out is not None:
        write_output(out, json.dumps(results, indent=1).encode(), "out")
        log.info("wrote %s", out)


def training_blocks(ckpt_path: str, count: int, batch_size: int, key: str) -> list[dict]:
    """The first ``count`` training blocks of the run that wrote ``ckpt_path``, in batches: a
    split apart from the held-out blocks, to fit a study's settings on."""
    data = run_data(ckpt_path, key, {"batch_size": batch_size}, "fit")
    batches, seen = [], 0
    for batch in data.train_dataloader():
        batches.append(batch)
        seen += len(batch["input_ids"])
        if seen >= count:
            break
    return batches
