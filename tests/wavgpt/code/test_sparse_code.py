import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from helpers.wavgpt_batches import small_config

from wavelab.wavgpt.code.positions import band_bounds, encode_positions
from wavelab.wavgpt.code.sizes import MAX_COEFFICIENTS
from wavelab.wavgpt.code.sparse_code import (
    SparseCode,
    code_bits,
    overhead_bytes,
    sent_bits,
)
from wavelab.wavgpt.model.core import WavGPTCore

pytestmark = pytest.mark.usefixtures("single_thread")


def random_code(
    T: int = 64,
    d: int = 48,
    k: int = 100,
    value_bits: int = 16,
    seed: int = 0,
    value_scale: str = "code",
    levels: int = 0,
) -> SparseCode:

    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(T * d, size=k, replace=False))
    values = rng.normal(size=k) * 3
    return SparseCode(
        T,
        d,
        T - 5,
        positions,
        values,
        encoder_fingerprint=bytes.fromhex("c24caa54e8979775"),
        value_bits=value_bits,
        compressor=bytes.fromhex("0123456789abcdef"),
        value_scale=value_scale,
        levels=levels,
    )


@pytest.mark.parametrize("value_bits", [4, 8, 16])
@pytest.mark.parametrize("value_scale", ["code", "band"])
@pytest.mark.parametrize("k", [0, 1, 100, 3000])  # 3000 of 3072: almost dense
def test_bytes_round_trip_exactly(value_bits, value_scale, k):
    code = random_code(k=k, value_bits=value_bits, value_scale=value_scale, levels=3)
    data = code.to_bytes()
    assert SparseCode.from_bytes(data) == code
    assert code.bits() == 8 * len(data)
    keep = np.zeros(code.block_size * code.d, bool)
    keep[code.positions] = True
    keep = keep.reshape(1, code.block_size, code.d)
    assert sent_bits(keep, 3, value_bits, value_scale, 8).tolist() == [8 * len(data)]


def test_values_are_rounded_to_the_value_width():
    rng = np.random.default_rng(0)
    rng.choice(64 * 48, size=100, replace=False)
    exact = rng.normal(size=100) * 3  # random_code's values, before any rounding
    assert np.array_equal(random_code().values, exact.astype("f2").astype("f4"))
    code = random_code(value_bits=4)
    assert len(np.unique(np.abs(code.values))) <= 8  # 0 and 7 levels of one scale
    assert code.scales[0] >= np.abs(code.values).max()  # nothing clipped


def test_positions_cost_little_more_than_the_ideal():
    """Per-band Rice codes of uniformly random positions: within 3 % of log2 C(T·d, k) plus
    the 5-bit parameter and the band count per band (on real codes, whose bands are kept at
    very different rates, they come below the one-rate ideal)."""
    T, d = 256, 384
    for k, levels in ((T * d // 16, 0), (T * d // 16, 8), (T * d // 64, 8), (500, 8)):
        code = random_code(T, d, k, levels=levels)
        positions = 8 * len(encode_positions(code.positions, band_bounds(T, d, levels)))
        ideal = code_bits(k, T, d, value_bits=0)
        assert positions < 1.03 * ideal + (levels + 1) * (5 + 17) + 8, (k, levels)


def test_size_is_compact():
    T, d = 256, 384
    k = T * d // 16
    code = random_code(T, d, k)
    assert code.bits() < T * d * 16 / 8  # 8x below dense fp16
    ideal = code_bits(k, T, d, value_bits=16, header_bits=8 * overhead_bytes(8))
    assert ideal < code.bits() < 1.01 * ideal
    assert random_code(T, d, k, value_bits=4).bits() < 0.5 * code.bits()


def test_overhead_is_what_an_empty_code_sends():
    """Training's bit accounting adds overhead_bytes to every code: it must be exactly what the
    format writes besides positions and values, i.e. the whole of a code with k = 0."""
    for fingerprint in (b"", bytes(8), bytes(32)):
        empty = SparseCode(4, 8, 1, np.array([], int), [], encoder_fingerprint=fingerprint)
        # + 1 byte: the position stream's 5-bit Rice parameter
        assert len(empty.to_bytes()) == overhead_bytes(len(fingerprint)) + 1
        assert overhead_bytes(len(fingerprint)) == 35 + len(fingerprint)


def test_code_bits_is_the_log_binomial():
    assert math.isclose(
        code_bits(3, 4, 5, value_bits=16, header_bits=7), 7 + math.log2(math.comb(20, 3)) + 48
    )
    k = torch.tensor([0, 1, 17, 20])
    expected = torch.tensor([code_bits(int(v), 4, 5, value_bits=8) for v in k], dtype=torch.float64)
    torch.testing.assert_close(code_bits(k, 4, 5, value_bits=8), expected)


def test_corrupt_bytes_raise_clear_errors():
    data = random_code().to_bytes()
    flipped = bytearray(data)
    flipped[40] ^= 0x10
    with pytest.raises(ValueError, match="checksum mismatch"):
        SparseCode.from_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="length mismatch"):
        SparseCode.from_bytes(data[:-3])
    with pytest.raises(ValueError, match="length mismatch"):
        SparseCode.from_bytes(data + b"\0")
    with pytest.raises(ValueError, match="truncated"):
        SparseCode.from_bytes(data[:10])
    with pytest.raises(ValueError, match="not a WavGPT code: magic b'PK"):
        SparseCode.from_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(ValueError, match="unsupported WavGPT code version 4"):
        SparseCode.from_bytes(data[:4] + struct.pack("B", 4) + data[5:])


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("version", [1, 2])
def test_codes_of_other_versions_are_refused_by_version(version):
    # a valid v1 code (header 18 bytes, no compressor fingerprint, k = 0), and a v2 header
    fields = [b"WAVC", version, 0b100, 0, 0, 16, 32, 3, 0]
    layout = "<4sBBBBHHHI" if version == 1 else "<4sBBBBHHHI8s"
    data = with_crc(struct.pack(layout, *fields, *([bytes(8)] if version == 2 else [])))
    with pytest.raises(ValueError, match=rf"unsupported WavGPT code version {version}: .* 3 only"):
        SparseCode.from_bytes(data)


def test_a_huge_shape_is_refused_before_any_allocation():
    """T = d = 65535 in a few valid bytes would ask for 16 GiB in to_dense."""
    message = rf"4294836225 coefficients is invalid: .* at most {MAX_COEFFICIENTS}"
    data = with_crc(
        struct.pack("<4sBBBBBHHHII8s", b"WAVC", 3, 16, 0, 0, 0, 65535, 65535, 1, 0, 1, bytes(8))
    )
    assert len(data) == 35
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            SparseCode.from_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_values_beyond_fp16_are_clamped_not_inf():
    code = SparseCode(4, 8, 4, np.array([1, 2, 3]), [1e6, -np.inf, 3.0])
    assert code.values.tolist() == [65504.0, -65504.0, 3.0]
    assert SparseCode.from_bytes(code.to_bytes()) == code
    eight = SparseCode(4, 8, 4, np.array([1, 2]), [1e9, 1.0], value_bits=8)
    assert eight.scales.tolist() == [65504.0] and eight.values[0] == 65504.0


def patched(data: bytes, offset: int, raw: bytes) -> bytes:
    """data with raw written at offset and the checksum made valid again."""
    body = data[:offset] + raw + data[offset + len(raw) : -4]
    return with_crc(body)


def test_non_finite_values_and_bad_scales_are_refused():
    fp16 = random_code(k=10)
    data = fp16.to_bytes()
    for bad in (np.inf, np.nan):
        with pytest.raises(ValueError, match="non-finite values"):
            SparseCode.from_bytes(patched(data, len(data) - 6, np.float16(bad).tobytes()))
    eight = random_code(k=10, value_bits=8).to_bytes()
    scale_at = 31 + 8  # header, encoder fingerprint
    for bad in (-1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="scales must be finite and >= 0"):
            SparseCode.from_bytes(patched(eight, scale_at, np.float16(bad).tobytes()))


def test_the_shape_limit_holds_for_constructed_codes_too():
    with pytest.raises(ValueError, match="at most 16777216"):
        SparseCode(4097, 4096, 1, np.array([], int), [])
    assert SparseCode(4096, 4096, 1, np.array([], int), []).to_dense().shape == (4096, 4096)


def test_invalid_codes_are_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        SparseCode(4, 4, 4, np.array([3, 2]), np.zeros(2))
    with pytest.raises(ValueError, match=r"in \[0, 16\)"):
        SparseCode(4, 4, 4, np.array([3, 16]), np.zeros(2))
    with pytest.raises(ValueError, match="value_bits=3 is invalid"):
        SparseCode(4, 4, 4, np.array([1]), np.zeros(1), value_bits=3)
    with pytest.raises(ValueError, match="values must not be NaN"):
        SparseCode(4, 4, 4, np.array([1]), [np.nan])
    with pytest.raises(ValueError, match="scales must be finite and >= 0"):
        SparseCode(4, 4, 4, np.array([1]), [1.0], value_bits=8, scales=[-1.0])
    with pytest.raises(ValueError, match=r"n_tokens=5 is invalid: must be in \[0, 4\]"):
        SparseCode(4, 4, 5, np.array([1]), np.zeros(1))
    with pytest.raises(ValueError, match="compressor fingerprint has 3 bytes: exactly 8"):
        SparseCode(4, 4, 4, np.array([1]), np.zeros(1), compressor=b"abc")


@pytest.mark.parametrize("value_bits", [4, 8, 16])
@pytest.mark.parametrize("value_scale", ["code", "band"])
def test_codes_from_the_core_decode_to_what_training_decoded(value_bits, value_scale):
    """bytes -> code -> dense is exactly the core's ``kept``, the fake-quantized values the
    refiner trains on, at every width and scale grouping."""
    cfg = small_config(keep_ratio=1 / 8, value_bits=value_bits, value_scale=value_scale)
    core = WavGPTCore(cfg, 32)
    mask = torch.arange(16)[None, :] < torch.tensor([[16], [7], [12]])
    out = core(torch.randn(3, 16, 32) * 4, mask)
    scales = out.code.scales
    codes = SparseCode.from_batch(
        out.code.values,
        out.code.keep,
        mask.sum(1),
        scales,
        encoder_fingerprint="00ff",
        value_bits=value_bits,
        compressor="0011223344556677",
        value_scale=value_scale,
        levels=core.dwt.levels,
    )
    assert [c.k for c in codes] == out.code.k.tolist()
    assert [c.n_tokens for c in codes] == [16, 7, 12]
    decoded = [SparseCode.from_bytes(c.to_bytes()) for c in codes]
    assert decoded == codes
    dense = torch.from_numpy(SparseCode.batch_to_dense(decoded))
    assert torch.equal(dense, out.code.values.detach())
    if value_bits < 16:
        assert np.array_equal(np.stack([c.scales for c in decoded]), scales.numpy())
        assert len(torch.unique(dense[0])) <= scales.shape[1] * (2**value_bits - 1)
    expected_bits = [8 * len(c.to_bytes()) for c in codes]
    sizes = sent_bits(out.code.keep, core.dwt.levels, value_bits, value_scale, 2)
    assert sizes.tolist() == expected_bits
