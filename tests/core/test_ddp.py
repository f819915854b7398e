"""Two-process CPU DDP (gloo) through the real CLI: one run dir, the global batch, exact val."""

from __future__ import annotations

import json

import pytest
import torch

from wavelab.data.lm import WindowDataset
from wavelab.data.loading import ResumableSampler
from wavelab.eval import evaluate


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt", "wavegpt", "wavgpt"])
def test_ddp_sim_one_dir_global_batch_and_same_val_as_one_process(
    model, make_cfg, train_cli, tmp_path
):
    steps, batch, world = 4, 4, 2
    result = train_cli(
        [
            f"model={model}",
            "trainer=ddp_sim",
            f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={steps}",
            "callbacks.throughput.every_n_steps=1",
        ],
        tmp_path,
    )
    console = result.stdout + result.stderr
    assert "💡 Tip" not in console and "LeafSpec" not in console  # quiet_lightning, every rank
    (run,) = (tmp_path / "logs/train/runs").iterdir()  # the ranks shared one run dir
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["global_step"] == steps
    assert summary["final"]["perf/samples"] == steps * batch * world

    # The DDP run's final validation (sharded over 2 ranks, synced) scored the weights in
    # last.ckpt; one process scoring the same checkpoint must see the same windows and numbers.
    (tmp_path / "run").mkdir()  # the eval's own output dir
    single = evaluate(
        make_cfg(
            f"ckpt_path={run / 'checkpoints/last.ckpt'}",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            config_name="eval",
        )
    )
    for key in ("val/loss", "val/acc"):
        assert single[key] == pytest.approx(summary["final"][key], rel=1e-5, abs=1e-7), key


def test_sampler_shards_ranks_disjointly_and_resumes_mid_epoch():
    ds = WindowDataset(torch.arange(200).numpy(), block_size=8)
    one = list(ResumableSampler(ds, num_replicas=1, rank=0, seed=3))
    ranks = [list(ResumableSampler(ds, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])  # every rank reads different windows...
    assert sorted(ranks[0] + ranks[1]) == sorted(one[: len(ranks[0]) * 2])  # ...of one order
    resumed = ResumableSampler(ds, num_replicas=2, rank=1, seed=3, skip=20)
    assert list(resumed) == ranks[1][20:]
    assert list(resumed) == ranks[1]  # only the resumed epoch starts late
