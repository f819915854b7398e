"""``python -m wavelab.wavgpt.study.retrieval``: checkpoints' decoded embeddings on every held-out
block of their run's data. On the blocks the run validated on it must reproduce the run's own
figures (another code path over the same checkpoint and blocks); on all blocks it scores more."""

from __future__ import annotations

import json

import pytest
from helpers.cli import assert_clean_error
from helpers.small import tiny_wavgpt_run

pytestmark = pytest.mark.usefixtures("single_thread")

VAL_BLOCKS = 8  # tiny_wavgpt_run's data.num_val_blocks


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_encoder_dir, corpus_file):
    """Two tiny WavGPT runs of the real entry point, a wavelet code and pca plus the block
    mean, each in its own run dir with its saved config."""
    from helpers.cli import Entry

    root = tmp_path_factory.mktemp("retrieval")
    (root / "work").mkdir()
    entry = Entry(root / "work", root / "cache")
    common = tiny_wavgpt_run(tiny_encoder_dir, corpus_file)
    made = {}
    for name, extra in {
        "wavelet": ["model.keep_ratio=0.25"],
        "pca_mean": ["model.coder=pca", "model.pca_rank=8", "model.pca_block_mean=true"],
    }.items():
        result = entry("run", *common, *extra, f"hydra.run.dir={root / name}")
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        made[name] = root / name
    return entry, made


def test_it_reproduces_the_runs_figures_on_their_blocks_and_scores_every_block(runs, tmp_path):
    entry, made = runs
    ckpts = {name: run / "checkpoints" / "last.ckpt" for name, run in made.items()}
    paths = ",".join(str(p) for p in ckpts.values())
    out = tmp_path / "same.json"
    result = entry(
        "wavgpt.study.retrieval", f"ckpt_paths=[{paths}]", f"max_blocks={VAL_BLOCKS}", f"out={out}"
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "two-part, 8-bit embedding + lzma" in result.stdout
    scored = json.loads(out.read_text())
    for name, ckpt in ckpts.items():
        final = json.loads((made[name] / "metrics.json").read_text())["final"]
        mine = scored[str(ckpt)]
        assert mine["blocks"] == VAL_BLOCKS
        for key in ("cosine_unrefined", "cosine", "bits_per_token", "recall_at_1_unrefined"):
            assert mine[key] == pytest.approx(final[f"val/{key}"], rel=1e-4, abs=1e-5), key
        for key in ("recall_at_10", "spearman_unrefined"):
            assert mine[key] == pytest.approx(final[f"val/{key}"], rel=1e-4, abs=1e-5), key
    references = scored["references"]
    final = json.loads((made["wavelet"] / "metrics.json").read_text())["final"]
    for key in (
        "two_part_8bit/bits_per_token",
        "two_part_1bit/spearman",
        "lzma_block_bits_per_token",
    ):
        assert references[f"ref/{key}"] == pytest.approx(final[f"ref/{key}"], rel=1e-6), key

    every = tmp_path / "every.json"
    result = entry("wavgpt.study.retrieval", f"ckpt_paths=[{paths}]", f"out={every}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    blocks = json.loads(every.read_text())["references"]["blocks"]
    assert blocks > VAL_BLOCKS
    assert f"{int(blocks)} held-out blocks" in result.stdout


def test_bad_inputs_are_one_clear_line(runs, tmp_path):
    entry, made = runs
    ckpt = made["wavelet"] / "checkpoints" / "last.ckpt"
    assert_clean_error(entry("wavgpt.study.retrieval"), "ckpt_paths")
    assert_clean_error(
        entry("wavgpt.study.retrieval", f"ckpt_paths=[{ckpt}]", "max_blocks=0"), "max_blocks=0"
    )
    assert_clean_error(
        entry("wavgpt.study.retrieval", f"ckpt_paths=[{tmp_path / 'nope.ckpt'}]"), "nope.ckpt"
    )
    assert_clean_error(
        entry("wavgpt.study.retrieval", f"ckpt_paths=[{ckpt}]", f"out={ckpt}"), "out=", "last.ckpt"
    )
