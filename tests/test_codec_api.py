"""WavGPTCodec and ``python -m wavelab.codec`` on a tiny checkpoint from a real Lightning fit."""

from __future__ import annotations

import base64
import subprocess
import sys

import numpy as np
import pytest
import torch
from wavgpt_checkpoint import fit_checkpoint

from wavelab.codec import SparseCode, WavGPTCodec, main

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
    assert all(c.fingerprint == codec.fingerprint and c.value_dtype == "fp16" for c in codes)
    data = [c.to_bytes() for c in codes]
    assert [SparseCode.from_bytes(b) for b in data] == codes
    assert codec.decode(data) == codec.decode(codes)
    size = codec.size(codes[0])
    assert size.num_bytes == len(data[0])
    assert size.bits_per_token == 8 * len(data[0]) / codes[0].n_tokens
    assert size.ideal_bits_per_token < size.bits_per_token


def test_lossless_code_without_refiner_decodes_what_the_head_reads(tiny_encoder_dir, tmp_path):
    path = tmp_path / "lossless.ckpt"
    fit_checkpoint(tiny_encoder_dir, path, steps=1, keep_ratio=1.0, refine=False)
    codec = WavGPTCodec.from_checkpoint(path, value_dtype="fp32")
    ids, mask = codec.tokenize(TEXTS)
    assert codec.decode(codec.encode(TEXTS)) == codec.head_decode(ids, mask)


def test_long_text_is_truncated_with_a_warning(codec):
    with pytest.warns(UserWarning, match="word pieces"):
        (code,) = codec.encode(["the " * 100])
    assert code.n_tokens == codec.block_size


def test_mismatched_or_corrupt_codes_give_clear_errors(codec):
    (code,) = codec.encode(TEXTS[:1])
    other = SparseCode(
        code.block_size, code.d, code.n_tokens, code.positions, code.values, b"\x01" * 8
    )
    with pytest.raises(ValueError, match="encoder fingerprint 0101010101010101"):
        codec.decode([other])
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        codec.decode([SparseCode(16, code.d, 3, [0], [1.0], code.fingerprint)])
    with pytest.raises(ValueError, match="checksum"):
        codec.decode([base64.b64decode(corrupt(code))])


def test_similarity_is_one_with_itself_and_symmetric(codec):
    codes = codec.encode(TEXTS)
    sim = codec.similarity(TEXTS, codes)  # texts are encoded, so this is the same as codes
    torch.testing.assert_close(sim.diagonal(), torch.ones(len(TEXTS)))
    torch.testing.assert_close(sim, sim.T)
    torch.testing.assert_close(codec.similarity(codes[:1], codes[1:]), sim[:1, 1:])
    assert (sim.abs() <= 1 + 1e-5).all()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wavelab.codec", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_encode_decode(codec, ckpt, tmp_path, capsys):
    out = tmp_path / "code.bin"
    result = run_cli("encode", f"ckpt_path={ckpt}", f"text={TEXTS[0]}", f"out={out}")
    assert result.returncode == 0, result.stderr
    b64, stats = result.stdout.splitlines()[:2]
    assert base64.b64decode(b64) == out.read_bytes()
    assert "bits/token" in stats
    expected = codec.decode([out.read_bytes()])[0]
    # decode in-process (a second interpreter start costs more than the test itself)
    for key in (f"code={b64}", f"code_file={out}"):
        main(["decode", f"ckpt_path={ckpt}", key])
        assert capsys.readouterr().out.strip() == expected
    main(["roundtrip", f"ckpt_path={ckpt}", f"text={TEXTS[1]}"])
    assert "decoded: " in capsys.readouterr().out


def corrupt(code: SparseCode) -> str:
    data = bytearray(code.to_bytes())
    data[-6] ^= 0xFF  # a value byte: only the checksum can tell
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # decode reads the code before the checkpoint, so no checkpoint is needed to reject it
        (["decode", "ckpt_path=unused.ckpt", "code=CORRUPT"], "checksum mismatch"),
        (["decode", "ckpt_path=unused.ckpt", "code=not base64!"], "not valid base64"),
        (["decode", "ckpt_path=unused.ckpt", "code_file=/no/such.bin"], "No such file"),
        (["encode", "text=hi"], "missing ckpt_path=..."),
        (["encode", "ckpt_path=/no/such.ckpt", "text=hi"], "no such checkpoint file"),
        (["decode", "colour=red"], "unknown key 'colour'"),
        (["compress"], "unknown verb 'compress'"),
    ],
)
def test_cli_errors_exit_2_with_one_line(codec, args, message, capsys):
    args = [a.replace("CORRUPT", corrupt(codec.encode(TEXTS[:1])[0])) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_corrupt_code_in_a_real_process(codec, ckpt):
    result = run_cli("decode", f"ckpt_path={ckpt}", f"code={corrupt(codec.encode(TEXTS)[0])}")
    assert result.returncode == 2
    assert result.stderr == "error: WavGPT code checksum mismatch: the bytes are corrupt\n"


def test_codes_are_vectorised_per_batch(codec):
    ids, mask = codec.tokenize(TEXTS * 20)
    codes = codec.encode_ids(ids, mask)
    assert len(codes) == 60 and np.array_equal(codes[0].positions, codes[3].positions)
