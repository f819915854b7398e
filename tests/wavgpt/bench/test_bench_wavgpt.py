"""``python -m wavelab.bench wavgpt`` times WavGPT's own training step (no timing assertions:
CI is noisy; only how the times are measured and what they add up to)."""

from __future__ import annotations

import copy
import json

import lightning as L
import pytest
import torch
from helpers.wavgpt_checkpoint import blocks, tiny_module

from wavelab.core.compose import compose
from wavelab.core.config import instantiate
from wavelab.wavgpt.bench import train as wavgpt

pytestmark = pytest.mark.usefixtures("single_thread")


def stacked(samples: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def test_a_timed_step_is_the_modules_own_training_step(tiny_encoder_dir):
    torch.manual_seed(0)
    module = tiny_module(tiny_encoder_dir, keep_ratio=0.25).train()
    untouched = copy.deepcopy(module)
    batch = stacked(blocks(4))
    clock = wavgpt.Clock(torch.device("cpu"))
    optimizer = module.configure_optimizers()["optimizer"]

    loss = wavgpt.train_step(module, optimizer, 1.0, batch, clock)

    assert torch.equal(loss, untouched._shared_step(batch, "train").detach())
    # Each stage ran once, inside the forward; the forward and the optimizer step once each.
    assert {name: len(s) for name, s in clock.seconds.items()} == {
        **dict.fromkeys(wavgpt.STAGES, 1),
        "forward": 1,
        "step": 1,
    }
    (head_loss,) = wavgpt.head_loss_seconds(clock.seconds)
    assert head_loss >= 0  # the stages are disjoint parts of the forward
    # The wrappers are gone again, and the step trained the core.
    for locate in wavgpt.STAGES.values():
        owner, method = locate(module)
        assert method not in vars(owner)
    changed = [
        name
        for (name, p), q in zip(module.core.named_parameters(), untouched.core.parameters())
        if not torch.equal(p, q)
    ]
    assert any(n.startswith("dwt.") for n in changed)
    assert any(n.startswith("refiner.") for n in changed)


def test_the_bench_compares_both_paths_section_by_section_with_their_real_losses(
    tiny_encoder_dir, corpus_file, cache_dir, tmp_path
):
    overrides = (
        f"model.encoder.name_or_path={tiny_encoder_dir}",
        f"data.path={corpus_file}",
        f"paths.cache_dir={cache_dir}",
        "data.block_size=32",
        "data.batch_size=2",
        "model.refine_layers=1",
        "model.refine_heads=2",
        "model.kd_top_k=8",
    )
    result = wavgpt.run(wavgpt.Settings(steps=2, warmup=0, overrides=overrides))
    assert list(result["paths"]) == ["live", "cached"]
    for name, path in result["paths"].items():
        assert set(path["ms"]) == {*wavgpt.SECTIONS, "forward", "lifting_backward"}, name
        assert path["step_ms"] == sum(path["ms"][s] for s in wavgpt.SECTIONS)
        assert 0 < path["lifting_share_forward"] < path["lifting_share"] < 1
        assert 0 < path["tokens_per_s_real"] <= path["tokens_per_s_padded"]
        assert len(path["losses"]) == 2
    # The cached path never runs the encoder; the live one does.
    assert (
        result["paths"]["cached"]["ms"]["encoder"] == 0 < result["paths"]["live"]["ms"]["encoder"]
    )
    assert result["config"]["d"] == 32 and result["teacher_cache_mb"] > 0
    table = wavgpt.format_table(result)
    assert "cached vs live" in table and "teacher cache on disk" in table

    # Each path's first timed loss is the module's own _shared_step on its first batch.
    for name in ("live", "cached"):
        cfg = compose(["model=wavgpt", *wavgpt.PATHS[name], *overrides], output_dir=tmp_path)
        L.seed_everything(cfg.seed, verbose=False)
        data = instantiate(cfg.data)
        data.prepare_data()
        data.setup("fit")
        module = instantiate(cfg.model).train()
        first = module._shared_step(next(iter(data.train_dataloader())), "train")
        assert result["paths"][name]["losses"][0] == float(first.detach()), name


def test_the_cli_passes_training_overrides_on_and_writes_json(entry, tiny_encoder_dir, corpus_file):
    out = entry.cwd / "bench.json"
    result = entry(
        "bench",
        "wavgpt",
        "steps=1",
        "warmup=0",
        "threads=1",
        f"json={out}",
        "compare=[cached]",
        "model.keep_ratio=0.125",  # not a bench key: an override of the benchmarked config
        f"model.encoder.name_or_path={tiny_encoder_dir}",
        f"data.path={corpus_file}",
        "data.block_size=32",
        "data.batch_size=2",
        "model.refine_layers=1",
        "model.refine_heads=2",
        "model.kd_top_k=8",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert saved["config"]["keep_ratio"] == 0.125 and saved["settings"]["steps"] == 1
    assert list(saved["paths"]) == ["cached"]
    assert "training step" in result.stdout
    assert "Traceback" not in result.stderr
