"""WavGPTCodec and ``python -m wavelab.wavgpt.codec`` on a tiny checkpoint from a real Lightning fit."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from helpers.wavgpt_checkpoint import fit_checkpoint

from wavelab.wavgpt.codec import SparseCode, WavGPTCodec, code_bits
from wavelab.wavgpt.metrics.distortion import mean_pool

pytestmark = pytest.mark.usefixtures("single_thread")

TEXTS = ["the wave lab", "let it be a text.", "to and of"]


@pytest.fixture(scope="module")
def ckpt(tiny_encoder_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("codec") / "tiny.ckpt"
    fit_checkpoint(tiny_encoder_dir, path, keep_ratio=0.25)
    return path


@pytest.fixture(scope="module")
def codec(ckpt):
    return WavGPTCodec.from_checkpoint(ckpt)


def test_encode_bytes_decode_round_trip(codec):
    codes = codec.encode(TEXTS)
    assert [c.n_tokens for c in codes] == [len(codec.tokenizer.tokenize(t)) + 2 for t in TEXTS]
    assert all(
        c.encoder_fingerprint == codec.encoder_fingerprint and c.value_bits == 16 for c in codes
    )
    data = [c.to_bytes() for c in codes]
    assert [SparseCode.from_bytes(b) for b in data] == codes
    assert codec.decode(data) == codec.decode(codes)
    size = codec.size(codes[0])
    assert size.num_bytes == len(data[0])
    assert size.bits_per_token == 8 * len(data[0]) / codes[0].n_tokens
    # per-band Rice codes of the positions can beat the one-rate ideal log2 C(T·d, k)
    assert 0.9 < size.bits_per_token / size.ideal_bits_per_token < 1.1


def test_lossless_code_without_refiner_decodes_what_the_head_reads(tiny_encoder_dir, tmp_path):
    path = tmp_path / "lossless.ckpt"
    fit_checkpoint(tiny_encoder_dir, path, steps=1, keep_ratio=1.0, refine=False)
    codec = WavGPTCodec.from_checkpoint(path)  # fp16 values: the tiny head's argmax holds
    ids, mask = codec.tokenize(TEXTS)
    assert codec.decode(codec.encode(TEXTS)) == codec.head_decode(ids, mask)


def test_encode_does_not_run_the_refiner(codec):
    calls = []
    hook = codec.module.core.refiner.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        codes = codec.encode(TEXTS)
        assert not calls
        codec.decode(codes)
        assert calls
    finally:
        hook.remove()


@pytest.mark.parametrize(("value_bits", "value_scale"), [(8, "code"), (4, "band")])
def test_codes_carry_the_checkpoints_value_bits(
    tiny_encoder_dir, tmp_path, value_bits, value_scale
):
    path = tmp_path / f"q{value_bits}.ckpt"
    fit_checkpoint(
        tiny_encoder_dir,
        path,
        steps=1,
        keep_ratio=0.25,
        value_bits=value_bits,
        value_scale=value_scale,
    )
    codec = WavGPTCodec.from_checkpoint(path)
    codes = codec.encode(TEXTS)
    assert all((c.value_bits, c.value_scale) == (value_bits, value_scale) for c in codes)
    data = [c.to_bytes() for c in codes]
    assert [SparseCode.from_bytes(b) for b in data] == codes
    assert codec.decode(data) == codec.decode(codes)
    ids, mask = codec.tokenize(TEXTS)
    out = codec.module.core(codec.module.encoder.hidden(ids, mask), mask)
    assert np.array_equal(SparseCode.batch_to_dense(codes), out.code.values.detach().numpy())


def test_long_text_is_truncated_with_a_warning(codec):
    with pytest.warns(UserWarning, match="word pieces"):
        (code,) = codec.encode(["the " * 100])
    assert code.n_tokens == codec.block_size


@pytest.fixture(scope="module")
def other_ckpt(tiny_encoder_dir, tmp_path_factory):
    """Same encoder and shape as ``ckpt``, other trained weights (one step fewer)."""
    path = tmp_path_factory.mktemp("codec_other") / "other.ckpt"
    fit_checkpoint(tiny_encoder_dir, path, steps=1, keep_ratio=0.25)
    return path


def test_a_code_from_another_checkpoint_with_the_same_encoder_is_refused(codec, other_ckpt):
    other = WavGPTCodec.from_checkpoint(other_ckpt)
    assert (
        other.encoder_fingerprint == codec.encoder_fingerprint
        and other.compressor != codec.compressor
    )
    (code,) = other.encode(TEXTS[:1])
    assert code.compressor == other.compressor
    message = f"compressor fingerprint {other.compressor.hex()}, but .* {codec.compressor.hex()}"
    with pytest.raises(ValueError, match=message):
        codec.decode([code.to_bytes()])
    assert other.decode([code]) == other.decode([code.to_bytes()])


def test_the_compressor_fingerprint_follows_the_weights_not_the_instance(codec, ckpt):
    again = WavGPTCodec.from_checkpoint(ckpt)
    assert again.compressor == codec.compressor
    with torch.no_grad():
        again.module.core.refiner.mlp_scale.add_(1.0)
    assert WavGPTCodec(again.module).compressor != codec.compressor


def test_training_counts_the_overhead_the_format_sends(codec):
    """val/bits_per_token's per-code overhead = the bytes of a code that keeps nothing."""
    (code,) = codec.encode(TEXTS[:1])
    payload = code_bits(code.k, code.block_size, code.d, value_bits=16)
    ids, mask = codec.tokenize(TEXTS[:1])
    out = codec.module.core(codec.module.encoder.hidden(ids, mask), mask)
    fingerprint_bytes = codec.module.fingerprint_bytes()
    trained = float(codec.module.core.bits(out.code, fingerprint_bytes)[0])
    empty = SparseCode(
        code.block_size,
        code.d,
        1,
        np.array([], int),
        [],
        encoder_fingerprint=code.encoder_fingerprint,
        value_bits=16,
        compressor=code.compressor,
    )
    position_prefix = 1  # the empty code's position stream: one Rice parameter
    assert trained - payload == pytest.approx(8 * (len(empty.to_bytes()) - position_prefix))
    sent = codec.module.core.sent_bits(out.code, fingerprint_bytes)
    assert float(sent[0]) == 8 * len(code.to_bytes())


def test_mismatched_or_corrupt_codes_give_clear_errors(codec):
    (code,) = codec.encode(TEXTS[:1])
    other = SparseCode(
        code.block_size,
        code.d,
        code.n_tokens,
        code.positions,
        code.values,
        encoder_fingerprint=b"\x01" * 8,
    )
    with pytest.raises(ValueError, match="encoder fingerprint 0101010101010101"):
        codec.decode([other])
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        codec.decode(
            [SparseCode(16, code.d, 3, [0], [1.0], encoder_fingerprint=code.encoder_fingerprint)]
        )
    with pytest.raises(ValueError, match="compressor fingerprint 0000000000000000"):
        codec.decode(
            [
                SparseCode(
                    code.block_size,
                    code.d,
                    3,
                    [0],
                    [1.0],
                    encoder_fingerprint=code.encoder_fingerprint,
                )
            ]
        )
    with pytest.raises(ValueError, match="checksum"):
        codec.decode([base64.b64decode(corrupt(code))])


def test_similarity_is_one_with_itself_and_symmetric(codec):
    codes = codec.encode(TEXTS)
    sim = codec.similarity(TEXTS, codes)  # texts are encoded, so this is the same as codes
    torch.testing.assert_close(sim.diagonal(), torch.ones(len(TEXTS)))
    torch.testing.assert_close(sim, sim.T)
    torch.testing.assert_close(codec.similarity(codes[:1], codes[1:]), sim[:1, 1:])
    assert (sim.abs() <= 1 + 1e-5).all()


@pytest.mark.parametrize("refined", [False, True])
def test_embeddings_pool_the_states_the_core_decodes(codec, refined):
    """embed = the normalized mean over real tokens of the core's inverse transform (default) or
    of its refined states: the two embeddings that val/cosine_unrefined and val/cosine score."""
    ids, mask = codec.tokenize(TEXTS)
    with torch.no_grad():
        out = codec.module.core(codec.module.encoder.hidden(ids, mask), mask)
    states = out.refined if refined else out.unrefined
    expected = torch.nn.functional.normalize(mean_pool(states, mask), dim=-1)
    torch.testing.assert_close(codec.embed(TEXTS, refined), expected, rtol=1e-4, atol=1e-5)
    other = codec.embed(TEXTS, not refined)
    assert not torch.allclose(other, expected, atol=1e-3)  # the refiner moves the embedding


def test_cli_encode_decode_roundtrip(codec, ckpt, entry):
    out = entry.cwd / "code.bin"
    result = entry("wavgpt.codec", "encode", f"ckpt_path={ckpt}", f"text={TEXTS[0]}", f"out={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    b64, stats = result.stdout.splitlines()[:2]
    assert base64.b64decode(b64) == out.read_bytes()
    assert "bits/token" in stats
    expected = codec.decode([out.read_bytes()])[0]
    # the bare verb and verb=..., a base64 value (with "=" and "+") and a file
    for args in (["decode", f"code={b64}"], ["verb=decode", f"code_file={out}"]):
        result = entry("wavgpt.codec", *args, f"ckpt_path={ckpt}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == expected


def test_cli_takes_free_text_literally(ckpt, entry):
    """Commas, quotes, "=" and ${...} in a text: Hydra would read a sweep, refuse or resolve."""
    text = 'it\'s, "he" said = ${oc.env:HOME} \\'
    result = entry("wavgpt.codec", "roundtrip", f"ckpt_path={ckpt}", f"text={text}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"text:    {text}\n" in result.stdout
    assert "decoded: " in result.stdout


def test_cli_help_lists_the_keys(entry):
    result = entry("wavgpt.codec", "--help")
    assert result.returncode == 0, result.stderr
    for key in ("verb", "ckpt_path", "text", "out", "code", "code_file", "device"):
        assert f"{key}:" in result.stdout


def corrupt(code: SparseCode) -> str:
    data = bytearray(code.to_bytes())
    data[-6] ^= 0xFF  # a value byte: only the checksum can tell
    return base64.b64encode(data).decode()


def test_codes_are_vectorised_per_batch(codec):
    ids, mask = codec.tokenize(TEXTS * 20)
    codes = codec.encode_ids(ids, mask)
    assert len(codes) == 60 and np.array_equal(codes[0].positions, codes[3].positions)
