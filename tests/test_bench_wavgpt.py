"""``python -m wavelab.bench wavgpt`` on the tiny encoder (no timing assertions: CI is noisy)."""

from __future__ import annotations

import argparse

import pytest
import torch
from wavgpt_checkpoint import blocks, tiny_module

from wavelab.bench import wavgpt

pytestmark = pytest.mark.usefixtures("single_thread")


def test_bench_reports_every_section(tiny_encoder_dir, corpus_file, cache_dir):
    settings = wavgpt.Settings(
        steps=2,
        warmup=0,
        overrides=(
            f"model.encoder.name_or_path={tiny_encoder_dir}",
            f"data.path={corpus_file}",
            f"paths.cache_dir={cache_dir}",
            "data.block_size=32",
            "data.batch_size=2",
            "model.refine_layers=1",
            "model.refine_heads=2",
        ),
    )
    result = wavgpt.run(settings)
    assert set(result["ms"]) == {*wavgpt.SECTIONS, "lifting_backward"}
    assert result["step_ms"] == sum(result["ms"][s] for s in wavgpt.SECTIONS)
    assert 0 < result["lifting_share_forward"] < result["lifting_share"] < 1
    assert 0 < result["tokens_per_s_real"] <= result["tokens_per_s_padded"]
    assert result["peak_memory_mb"] > 0 and result["config"]["d"] == 32
    table = wavgpt.format_table(result)
    assert "filter + lifting" in table and "tokens/s real" in table


def test_stages_are_the_core_forward(tiny_encoder_dir):
    module = tiny_module(tiny_encoder_dir, keep_ratio=0.25).eval()
    batch = blocks(4)
    ids = torch.stack([b["input_ids"] for b in batch])
    mask = torch.stack([b["attention_mask"] for b in batch])
    staged = wavgpt.forward_stages(module, ids, mask, wavgpt.Clock(torch.device("cpu")))
    _, out = module.encode(ids, mask)
    for name in ("coeffs", "keep", "h_hat", "refined"):
        torch.testing.assert_close(staged[name], getattr(out, name), rtol=0, atol=0)


def test_arguments_parse():
    parser = argparse.ArgumentParser()
    wavgpt.add_arguments(parser)
    args = parser.parse_args(["--steps", "3", "model.keep_ratio=0.125"])
    assert args.steps == 3 and args.overrides == ["model.keep_ratio=0.125"]
