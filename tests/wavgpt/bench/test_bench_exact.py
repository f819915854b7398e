"""``python -m wavelab.bench exact``: the exact coder's speed and bits beside raw LZMA2 on the same
blocks, every block decoded exactly and within 32 bits of its ideal."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_exact_bench_decodes_every_block_and_counts_its_bits():
    from wavelab.wavgpt.bench import exact

    result = exact.run(exact.Settings(texts=2, words=8, warmup=0))
    assert result["exact_blocks"] == 1.0
    assert 0 <= result["payload_over_ideal_bits_per_block"] <= 32
    assert result["payload_bits_per_token"] >= result["ideal_bits_per_token"] > 0
    assert all(v > 0 for v in result["tokens_per_cpu_s"].values())
    assert "decode" in exact.format_table(result)


def test_the_cli_writes_json(entry):
    out = entry.cwd / "exact.json"
    result = entry("bench", "exact", "texts=1", "words=5", "warmup=0", f"json={out}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert json.loads(out.read_text())["blocks"] == 1
