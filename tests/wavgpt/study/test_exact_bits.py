"""``python -m wavelab.wavgpt.study.exact_bits``: every code of the held-out blocks made exact,
decoded in other processes, with its rows traceable to the command and commit."""

from __future__ import annotations

import json

import pytest
from helpers.cli import assert_clean_error

pytestmark = pytest.mark.usefixtures("single_thread")


def test_every_row_is_decoded_exactly_in_fresh_processes(made, tmp_path):
    entry, ckpts, _ = made
    out = tmp_path / "study"
    result = entry(
        "wavgpt.study.exact_bits",
        f"ckpt_paths=[{ckpts['wavgpt']}]",
        f"prior={ckpts['prior']}",
        f"out_dir={out}",
        "fit_blocks=4",
        "alphas=[0.5,1.0]",
        "betas=[0.0,1.0]",
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["commit"] and "exact_bits" in results["command"]
    rows = {(r["code"], r["payload"]): r for r in results["rows"]}
    payloads = {"prior", "head", "product"}
    assert {p for c, p in rows if c == "ckpt0"} == payloads
    assert {("none", "prior"), ("none", "lzma ids"), ("two-part 1-bit", "prior")} <= set(rows)
    for row in rows.values():
        assert row["exact_blocks"] == 1.0, row
        assert row["blocks"] == results["blocks"] > 0
        total = row["code_bits_per_token"] + row["payload_bits_per_token"]
        assert row["total_bits_per_token"] == pytest.approx(total)
        if "payload_over_ideal_bits_per_block_max" in row:
            assert 0 <= row["payload_over_ideal_bits_per_block_max"] <= 32 + 8 * 10  # + record
    # the two-part code's payload under the prior is the no-code one's (plus the code's length)
    none, one_bit = rows[("none", "prior")], rows[("two-part 1-bit", "prior")]
    assert one_bit["payload_bits_per_token"] >= none["payload_bits_per_token"]
    assert 0 <= rows[("two-part 16-bit", "prior")]["neighbours_at_10"] <= 1
    assert set(results["decoded"]) == {"prior", "ckpt0_head", "ckpt0_product"}
    assert (out / "results.md").read_text().startswith("| code | payload |")
    assert (out / "total_bits.png").stat().st_size > 0


def test_a_bad_stage_is_one_line(made, tmp_path):
    entry, ckpts, _ = made
    result = entry(
        "wavgpt.study.exact_bits",
        f"ckpt_paths=[{ckpts['wavgpt']}]",
        f"prior={ckpts['prior']}",
        f"out_dir={tmp_path}",
        "stage=both",
    )
    assert_clean_error(result, "stage='both'")
