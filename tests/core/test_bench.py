"""The benchmark entry runs end to end on a tiny config (no timing assertions: CI is noisy)."""

from __future__ import annotations

import json
import sys

import lightning as L
import pytest
import torch

from wavelab.core.config import instantiate
from wavelab.core.optim import plain
from wavelab.wavegpt import bench as lm
from wavelab.wavegpt.model import GPT, GPTConfig

TINY = (
    "model.net.n_layer=1",
    "model.net.n_head=2",
    "model.net.n_embd=16",
    "data.block_size=8",
    "data.batch_size=2",
)


def test_lm_bench_reports_every_model_and_path(corpus_file, cache_dir):
    settings = lm.Settings(
        models=("gpt", "wavegpt", "wavegpt_causal"),
        steps=2,
        warmup=1,
        repeats=1,
        data_path=str(corpus_file),
        overrides=(*TINY, f"paths.cache_dir={cache_dir}"),
    )
    result = lm.run(settings)
    rows = {(r["model"], r["path"]): r for r in result["rows"]}
    assert set(rows) == {(m, p) for m in settings.models for p in lm.PATHS}
    for r in rows.values():
        assert r["ms_per_step"] > 0 and r["tokens_per_s"] > 0
        assert len(r["ms_per_step_runs"]) == 1
    for stat in ("pct", "median_pct"):
        assert f"vs_bare_{stat}" in rows["gpt", "lightning"]
        assert f"vs_bare_{stat}" not in rows["gpt", "bare"]
        for path in lm.PATHS:
            assert f"vs_gpt_{stat}" in rows["wavegpt", path]
    lit, bare = rows["gpt", "lightning"], rows["gpt", "bare"]
    assert lit["vs_bare_median_pct"] == lm.pct(lit["ms_per_step"], bare["ms_per_step"])
    assert rows["wavegpt", "bare"]["mode"] == "prev_block"
    assert result["config"]["n_embd"] == 16 and result["env"]["threads"] >= 1
    assert "wavegpt (prev_block)" in lm.format_table(result)


def test_cli_writes_json(corpus_file, entry):
    out = entry.cwd / "bench.json"
    result = entry(
        "bench",
        "lm",
        "models=[gpt]",
        "steps=1",
        "warmup=0",
        "repeats=1",
        f"data_path={corpus_file}",
        f"json={out}",
        *TINY,  # overrides of the benchmarked config, passed on
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "ms/step" in result.stdout
    saved = json.loads(out.read_text())
    assert {r["path"] for r in saved["rows"]} == set(lm.PATHS)
    assert saved["config"]["n_embd"] == 16 and saved["settings"]["models"] == ["gpt"]


@pytest.mark.parametrize("model", ["gpt", "wavegpt"])
def test_lightning_trains_exactly_what_the_bare_loop_trains(corpus_file, cache_dir, model):
    """Lightning adds no numerical difference: same init, batches, clipping, AdamW and schedule.

    So a gap between wavelab's numbers and a hand-written loop's is seed or sampling, not glue.
    """
    settings = lm.Settings(
        data_path=str(corpus_file), overrides=(*TINY, f"paths.cache_dir={cache_dir}")
    )
    cfg = lm.compose_model(model, settings, str(cache_dir / "bench_run"))
    data = instantiate(cfg.data)
    data.prepare_data()
    data.setup("fit")
    # Past the warmup, so the schedule's decay and the clipping both take part.
    steps = dict(warmup=0, steps=cfg.model.scheduler.warmup_steps + 5)
    lit = lm.train_lightning(cfg, data, lm.WindowTimer(**steps))
    bare = lm.train_bare(cfg, data, lm.WindowTimer(**steps))
    L.seed_everything(cfg.seed, verbose=False)  # the initial weights both paths started from
    init = GPT(GPTConfig(**{**plain(cfg.model.net), "vocab_size": data.vocab_size}))
    for (name, a), b, c in zip(bare.named_parameters(), lit.parameters(), init.parameters()):
        assert torch.equal(a, b), f"{name} differs between the bare loop and Lightning"
        assert not torch.equal(a, c), f"{name} never trained"


def test_the_codec_bench_times_both_round_trips_on_the_same_texts(tiny_encoder_dir):
    """``python -m wavelab.bench codec``: ours and the original procedure decode the same texts
    (an untrained module, but both sides run the same core), and the figures add up."""
    from wavelab.wavgpt.bench import codec

    overrides = (
        f"model.encoder.name_or_path={tiny_encoder_dir}",
        "data.block_size=32",
        "model.refine_layers=1",
        "model.refine_heads=2",
    )
    settings = codec.Settings(texts=2, words=8, repeats=1, warmup=0, overrides=overrides)
    result = codec.run(settings)
    assert result["block_size"] == 32 and result["d"] == 32
    assert result["same_text"] == 1.0
    median = result["seconds_per_text"]
    assert median["ours"] > 0 and median["reference"] > 0
    assert result["speedup"] == median["reference"] / median["ours"]
    assert min(median[k] for k in ("refiner", "head_argmax", "head_logits")) > 0
    assert median["floor"] > median["head_int8_product"] > 0
    assert result["speedup_at_floor"] == median["reference"] / median["floor"]
    table = codec.format_table(result)
    assert "reference" in table and "head" in table and "at most" in table


def test_the_codec_floor_counts_every_matrix_product_of_the_refiner():
    """The floor's multiply-adds: the token MLP, then per layer q, k, v, the output projection
    and the feed-forward, at each real token (the attention scores are left out)."""
    from wavelab.wavgpt.bench.codec import refiner_macs
    from wavelab.wavgpt.model.refiner import Refiner

    d, ff, layers, n = 16, 48, 2, 5
    refiner = Refiner(d, layers, heads=2, ff=ff)
    with torch.no_grad():  # where torch would take its fused kernel, which the counter can't see
        macs = refiner_macs(
            refiner.eval(), torch.randn(1, n, d), torch.ones(1, n, dtype=torch.bool)
        )
    assert macs == n * (2 * d * ff + layers * (4 * d * d + 2 * d * ff))


def test_the_data_bench_prepares_trains_and_resumes_each_tokenizer_in_its_own_process(entry):
    out = entry.cwd / "data.json"
    result = entry(
        "bench",
        "data",
        "sizes_mb=[0.05]",
        "tokenizers=[char,wordpiece]",
        "train_steps=2",
        "resume_steps=1",
        'train_overrides=["trainer.enable_progress_bar=false","model.scheduler.warmup_steps=1"]',
        f"workdir={entry.cwd / 'bench'}",
        f"json={out}",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["tokenizer"] for r in rows] == ["char", "wordpiece"]
    for row in rows:
        assert row["cache_mb"] > 0 and row["size_mb"] > 0 and not row["over_limit"]
        for stage in ("prep", "train", "resume"):
            assert row[f"{stage}_rss_gb"] > 0.05, stage  # an interpreter with torch, at least
        assert row["peak_rss_gb"] == max(row[f"{s}_rss_gb"] for s in ("prep", "train", "resume"))
    assert not (entry.cwd / "bench").exists()  # the corpora, caches and runs are removed


@pytest.mark.parametrize("shape", ["lines", "one_line", "non_ascii"])
def test_the_data_bench_corpora_have_their_shape_and_size(tmp_path, shape):
    from wavelab.data.bench import make_corpus

    path = tmp_path / "corpus.txt"
    make_corpus(path, 2_000_000, shape)
    data = path.read_bytes()
    text = data.decode("utf-8")  # never cut inside a character
    assert 1_990_000 < len(data) <= 2_000_000
    assert (b"\n" in data) == (shape != "one_line")
    non_ascii = sum(not c.isascii() for c in text) / len(text)
    assert (non_ascii > 0.5) if shape == "non_ascii" else (non_ascii == 0)


def test_a_command_past_the_rss_limit_is_killed_and_reported(tmp_path):
    from wavelab.bench.measure import run_measured

    grow = "x = b'1' * 400_000_000; import time; time.sleep(30)"
    done = run_measured([sys.executable, "-c", grow], tmp_path / "log", rss_limit_bytes=200_000_000)
    assert done.over_limit and done.returncode == -9 and done.seconds < 30
    fits = "x = b'1' * 300_000_000"
    done = run_measured([sys.executable, "-c", fits], tmp_path / "log", 2_000_000_000)
    assert not done.over_limit and done.returncode == 0 and done.peak_rss_bytes > 300_000_000


def test_the_sample_bench_runs_the_three_generators_on_the_same_tokens():
    from wavelab.wavegpt.hf.bench import Settings, format_table, run

    tiny = ["model.net.n_layer=1", "model.net.n_embd=32", "model.net.n_head=2"]
    settings = Settings(
        models=("gpt", "wavegpt_causal"),
        sizes={"tiny": [*tiny, "data.block_size=16"]},
        new_tokens=("within", 20),
        repeats=1,
    )
    result = run(settings)
    rows = result["rows"]
    assert [(r["model"], r["new_tokens"]) for r in rows] == [
        ("gpt", 15),
        ("gpt", 20),
        ("wavegpt_causal", 15),
        ("wavegpt_causal", 20),
    ]
    assert all(r["same_tokens"] and r["cache_s"] > 0 and r["full_s"] > 0 for r in rows)
    # transformers' model has block_size positions: it runs within the block only
    assert ["transformers_s" in r for r in rows] == [True, False, True, False]
    assert "| gpt | 1x32 | 16 | 20 |" in format_table(result)
