"""The two-part reference code: its embedding half quantizes as sentence-transformers does, and
its rate counts the embedding's bits plus each block's compressed text."""

from __future__ import annotations

import lzma

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.util import quantization

from wavelab.wavgpt.metrics import text_rates
from wavelab.wavgpt.metrics.text_rates import block_bits
from wavelab.wavgpt.metrics.two_part import (
    calibrate,
    decoded_embeddings,
    dequantize,
    quantize,
    two_part_bits_per_token,
)
from wavelab.wavgpt.model.validation_distortion import ValidationDistortion


def unit_embeddings(n: int = 200, d: int = 32, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_8_bit_codes_are_sentence_transformers_uint8():
    calibration, embeddings = unit_embeddings(seed=0), unit_embeddings(50, seed=1)
    theirs = quantization.quantize_embeddings(
        embeddings.numpy(), "uint8", calibration_embeddings=calibration.numpy()
    )
    mine = quantize(embeddings, 8, calibrate(calibration))
    assert np.array_equal(mine.numpy().astype(np.uint8), theirs)


def test_1_bit_codes_are_sentence_transformers_ubinary():
    embeddings = unit_embeddings()
    theirs = np.unpackbits(quantization.quantize_embeddings(embeddings.numpy(), "ubinary"), axis=-1)
    assert np.array_equal(quantize(embeddings, 1, calibrate(embeddings)).numpy(), theirs)
    assert set(dequantize(quantize(embeddings, 1, None), 1, None).unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("bits", [4, 8, 16])
def test_a_code_decodes_within_half_a_step_of_its_value(bits):
    embeddings = unit_embeddings()
    ranges = calibrate(embeddings)
    codes = quantize(embeddings, bits, ranges)
    assert codes.min() >= 0 and codes.max() <= 2**bits - 1
    step = (ranges[1] - ranges[0]) / (2**bits - 1)
    error = (dequantize(codes, bits, ranges) - embeddings).abs()
    assert (error <= step / 2 + 1e-6).all()
    assert torch.equal(quantize(dequantize(codes, bits, ranges), bits, ranges), codes)


def test_more_bits_keep_more_of_the_embedding():
    embeddings = unit_embeddings()
    cosines = [
        F.cosine_similarity(decoded_embeddings(embeddings, bits), embeddings).mean().item()
        for bits in (1, 4, 8, 16)
    ]
    assert cosines == sorted(cosines) and cosines[-1] > 0.99999 and cosines[0] < 0.9
    with pytest.raises(ValueError, match="bits=2"):
        quantize(embeddings, 2, calibrate(embeddings))


def test_the_rate_is_the_embedding_bits_plus_each_blocks_compressed_text():
    texts = ["to be or not to be", "that is the question"]
    raw = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
    lzma_bits = sum(
        8 * len(lzma.compress(t.encode(), format=lzma.FORMAT_RAW, filters=raw)) for t in texts
    )
    assert block_bits(texts, "lzma") == lzma_bits
    xz_bits = sum(8 * len(lzma.compress(t.encode(), preset=9 | lzma.PRESET_EXTREME)) for t in texts)
    assert block_bits(texts, "xz") == xz_bits > lzma_bits  # the container, counted
    rate = two_part_bits_per_token(lzma_bits, n_blocks=2, n_tokens=20, d=384, bits=8)
    assert rate == pytest.approx((lzma_bits + 2 * 384 * 8) / 20)
    with pytest.raises(ValueError, match="n_tokens=0"):
        two_part_bits_per_token(lzma_bits, 2, 0, 384, 8)


def test_the_references_score_the_two_part_code_under_the_codes_metric_names():
    embeddings = unit_embeddings(64)
    texts = [f"block number {i}" for i in range(64)]
    rows = [[1, 7 + i % 900, 8, 9, 2] for i in range(64)]
    refs = ValidationDistortion.references(texts, rows, 1000, embeddings * 3.0)
    assert refs["ref/ids_bits_per_token"] == pytest.approx(np.log2(1000))
    for bits in (1, 4, 8, 16):
        prefix = f"ref/two_part_{bits}bit/"
        # measured by decompressing every block's ids
        assert refs[prefix + "acc"] == refs[prefix + "exact_blocks"] == 1.0
        ids_bits = refs["ref/lzma_ids_block_bits_per_token"] * 64 * 5
        expected = (ids_bits + 64 * embeddings.shape[-1] * bits) / (64 * 5)
        assert refs[prefix + "bits_per_token"] == pytest.approx(expected)
        for name in ("cosine", "recall_at_1", "recall_at_10", "spearman"):
            assert refs[prefix + name] == refs[prefix + name + "_unrefined"]
    assert refs["ref/two_part_16bit/recall_at_1"] == 1.0
    assert refs["ref/two_part_16bit/spearman"] > 0.9999
    assert refs["ref/two_part_1bit/spearman"] < refs["ref/two_part_8bit/spearman"]


def test_the_two_part_codes_exactness_is_measured_by_decoding(monkeypatch):
    rows = [[101, 7, 300, 102], [101, 70000, 5, 102]]  # uint16 and uint32 ids
    bits, acc, exact = text_rates.coded_ids(rows)
    assert (acc, exact) == (1.0, 1.0) and bits > 0
    # a decompressor that loses the last id: the measurement sees it
    lossy = text_rates.DECOMPRESSORS["lzma"]
    monkeypatch.setitem(
        text_rates.DECOMPRESSORS, "lzma", lambda data: lossy(data)[:-2] + b"\xff\xff"
    )
    _, acc, exact = text_rates.coded_ids(rows)
    assert exact == 0.0 and acc < 1.0


@pytest.mark.parametrize("name", sorted(text_rates.COMPRESSORS))
def test_every_reference_compressor_round_trips(name):
    data = b"to be or not to be, that is the question" * 3
    assert text_rates.DECOMPRESSORS[name](text_rates.COMPRESSORS[name](data)) == data
