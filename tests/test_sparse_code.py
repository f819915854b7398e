import math
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from wavgpt_helpers import small_config

from wavelab.models.wavgpt import WavGPTCore
from wavelab.sparse_code import MAX_COEFFICIENTS, SparseCode, code_bits, overhead_bytes

pytestmark = pytest.mark.usefixtures("single_thread")


def random_code(
    T: int = 64, d: int = 48, k: int = 100, value_dtype: str = "fp16", seed: int = 0
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
        bytes.fromhex("c24caa54e8979775"),
        value_dtype,
        compressor=bytes.fromhex("0123456789abcdef"),
    )


@pytest.mark.parametrize("value_dtype", ["fp16", "bf16", "fp32"])
@pytest.mark.parametrize("k", [0, 1, 100, 3000])  # 3000 of 3072: the bitmask is smaller
def test_bytes_round_trip_exactly(value_dtype, k):
    code = random_code(k=k, value_dtype=value_dtype)
    data = code.to_bytes()
    assert SparseCode.from_bytes(data) == code
    assert code.bits() == 8 * len(data)


def test_values_are_rounded_to_the_value_dtype():
    code = random_code(value_dtype="bf16")
    assert np.array_equal(code.values, torch.tensor(code.values).bfloat16().float().numpy())
    assert not np.array_equal(code.values, random_code(value_dtype="fp32").values)


def test_size_is_compact():
    T, d = 256, 384
    k = T * d // 16
    code = random_code(T, d, k)
    dense_fp16_bits = T * d * 16
    assert code.bits() < dense_fp16_bits / 8
    ideal = code_bits(k, T, d, value_bits=16)
    assert ideal < code.bits() < 1.25 * ideal  # fixed-width gaps cost < 25% over log2 C(n, k)
    # the denser code falls back to the bitmask, which costs T * d bits
    dense = random_code(T=16, d=16, k=200)
    # header 26 (with the 8-byte compressor fingerprint), encoder fingerprint 8, CRC 4
    assert dense.bits() == 8 * (26 + 8 + 16 * 16 // 8 + 200 * 2 + 4)


def test_overhead_is_what_an_empty_code_sends():
    """Training's bit accounting adds overhead_bytes to every code: it must be exactly what the
    format writes besides positions and values, i.e. the whole of a code with k = 0."""
    for fingerprint in (b"", bytes(8), bytes(32)):
        empty = SparseCode(4, 8, 1, np.array([], int), [], fingerprint)
        assert len(empty.to_bytes()) == overhead_bytes(len(fingerprint)) == 30 + len(fingerprint)


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
    with pytest.raises(ValueError, match="unsupported WavGPT code version 3"):
        SparseCode.from_bytes(data[:4] + struct.pack("B", 3) + data[5:])


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_version_1_codes_are_refused_by_version():
    # a valid v1 code (header 18 bytes, no compressor fingerprint, k = 0)
    v1 = with_crc(struct.pack("<4sBBBBHHHI", b"WAVC", 1, 0b100, 0, 0, 16, 32, 3, 0))
    with pytest.raises(ValueError, match=r"unsupported WavGPT code version 1: .* version 2"):
        SparseCode.from_bytes(v1)


@pytest.mark.parametrize("version", [1, 2])
def test_a_huge_shape_is_refused_before_any_allocation(version):
    """T = d = 65535 in a few valid bytes would ask for 16 GiB in to_dense."""
    if version == 1:  # the 22-byte code of the report
        data = with_crc(struct.pack("<4sBBBBHHHI", b"WAVC", 1, 0b100, 0, 0, 65535, 65535, 1, 0))
        message = "version 1"
    else:
        data = with_crc(
            struct.pack("<4sBBBBHHHI8s", b"WAVC", 2, 0b100, 0, 0, 65535, 65535, 1, 0, bytes(8))
        )
        message = rf"4294836225 coefficients is invalid: .* at most {MAX_COEFFICIENTS}"
    assert len(data) == (22 if version == 1 else 30)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=message):
            SparseCode.from_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20 and time.perf_counter() - start < 1.0


def test_the_shape_limit_holds_for_constructed_codes_too():
    with pytest.raises(ValueError, match="at most 16777216"):
        SparseCode(4097, 4096, 1, np.array([], int), [])
    assert SparseCode(4096, 4096, 1, np.array([], int), []).to_dense().shape == (4096, 4096)


def test_invalid_codes_are_refused():
    with pytest.raises(ValueError, match="strictly increasing"):
        SparseCode(4, 4, 4, np.array([3, 2]), np.zeros(2))
    with pytest.raises(ValueError, match=r"in \[0, 16\)"):
        SparseCode(4, 4, 4, np.array([3, 16]), np.zeros(2))
    with pytest.raises(ValueError, match="value_dtype='int8' is invalid"):
        SparseCode(4, 4, 4, np.array([1]), np.zeros(1), value_dtype="int8")
    with pytest.raises(ValueError, match=r"n_tokens=5 is invalid: must be in \[0, 4\]"):
        SparseCode(4, 4, 5, np.array([1]), np.zeros(1))
    with pytest.raises(ValueError, match="compressor fingerprint has 3 bytes: exactly 8"):
        SparseCode(4, 4, 4, np.array([1]), np.zeros(1), compressor=b"abc")


def test_batch_codes_from_the_core_round_trip():
    core = WavGPTCore(small_config(keep_ratio=1 / 8), 32)
    mask = torch.arange(16)[None, :] < torch.tensor([[16], [7], [12]])
    out = core(torch.randn(3, 16, 32), mask)
    codes = SparseCode.from_batch(
        out.coeffs, out.keep, mask.sum(1), fingerprint="00ff", compressor="0011223344556677"
    )
    assert all(c.compressor == bytes.fromhex("0011223344556677") for c in codes)
    assert [c.k for c in codes] == out.k.tolist()
    assert [c.n_tokens for c in codes] == [16, 7, 12]
    decoded = [SparseCode.from_bytes(c.to_bytes()) for c in codes]
    dense = torch.from_numpy(SparseCode.batch_to_dense(decoded))
    expected = (out.coeffs * out.keep).detach().half().float()
    assert torch.equal(dense, expected)
    assert np.array_equal(decoded[1].to_dense(), expected[1].numpy())
