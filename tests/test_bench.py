"""The benchmark entry runs end to end on a tiny config (no timing assertions: CI is noisy)."""

from __future__ import annotations

import json

from wavelab.bench import lm
from wavelab.bench.__main__ import main

TINY = (
    "model.net.n_layer=1",
    "model.net.n_head=2",
    "model.net.n_embd=16",
    "data.block_size=8",
    "data.batch_size=2",
)


def test_lm_bench_reports_every_model_and_path(tiny_shakespeare, cache_dir):
    settings = lm.Settings(
        models=("gpt", "wavegpt", "wavegpt_causal"),
        steps=2,
        warmup=1,
        repeats=1,
        data_path=str(tiny_shakespeare),
        overrides=(*TINY, f"paths.cache_dir={cache_dir}"),
    )
    result = lm.run(settings)
    rows = {(r["model"], r["path"]): r for r in result["rows"]}
    assert set(rows) == {(m, p) for m in settings.models for p in lm.PATHS}
    for r in rows.values():
        assert r["ms_per_step"] > 0 and r["tokens_per_s"] > 0
        assert len(r["ms_per_step_runs"]) == 1
    assert "vs_bare_pct" in rows["gpt", "lightning"]
    assert "vs_gpt_pct" in rows["wavegpt", "bare"] and "vs_gpt_pct" in rows["wavegpt", "lightning"]
    assert rows["wavegpt", "bare"]["mode"] == "prev_block"
    assert result["config"]["n_embd"] == 16 and result["env"]["threads"] >= 1
    assert "wavegpt (prev_block)" in lm.format_table(result)


def test_cli_writes_json(tiny_shakespeare, cache_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(
        [
            "lm",
            "--models",
            "gpt",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--data-path",
            str(tiny_shakespeare),
            "--json",
            str(out),
            *TINY,
            f"paths.cache_dir={cache_dir}",
        ]
    )
    assert "ms/step" in capsys.readouterr().out
    assert {r["path"] for r in json.loads(out.read_text())["rows"]} == set(lm.PATHS)
