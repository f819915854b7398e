"""The exact codec: every mode gives the ids back exactly, in this process and in another one with
another thread count, within a few bits of the ideal, and anything that would decode to other
ids is refused in one line instead."""

from __future__ import annotations

import base64
import zlib

import pytest
import torch
from helpers.cli import assert_clean_error

from wavelab.core.checkpoints import load_module
from wavelab.wavgpt.code.exact_format import MODES, ExactBlock, ExactFile
from wavelab.wavgpt.codec import WavGPTCodec
from wavelab.wavgpt.codec.exact import ExactCoder, Frame

pytestmark = pytest.mark.usefixtures("single_thread")

TEXTS = [
    "the wave let lab text is in a lab of the wave.",
    "a lab of the wave let lab text",
    "To be, or not to be: that is the question.",
    "the",
]


@pytest.fixture(scope="module")
def parts(made):
    _, ckpts, _ = made
    codec = WavGPTCodec.from_checkpoint(ckpts["wavgpt"])
    lm = load_module(str(ckpts["prior"]), key="prior")
    return codec, lm, ckpts


def coder_of(parts, mode: str, alpha: float = 1.0, beta: float = 1.0) -> ExactCoder:
    codec, lm, _ = parts
    frame = Frame(codec.tokenizer.cls_token_id, codec.tokenizer.sep_token_id)
    vocab = codec.module.encoder.vocab_size
    return ExactCoder(mode, frame, vocab, prior=lm, codec=codec, alpha=alpha, beta=beta)


def blocks_of(codec: WavGPTCodec, texts: list[str]) -> list[tuple[list[int], bytes]]:
    ids, mask = codec.tokenize(texts)
    codes = codec.encode_ids(ids, mask)
    return [
        (row[: int(n)].tolist(), code.to_bytes()) for row, n, code in zip(ids, mask.sum(1), codes)
    ]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_the_ids_back_exactly(parts, mode):
    coder = coder_of(parts, mode, alpha=0.7, beta=0.9)
    blocks = blocks_of(parts[0], TEXTS)
    data = coder.encode_file(blocks).to_bytes()
    assert coder.decode_file(ExactFile.from_bytes(data)) == [ids for ids, _ in blocks]


@pytest.mark.parametrize("mode", MODES)
def test_the_payload_costs_its_ideal_plus_at_most_32_bits(parts, mode):
    coder = coder_of(parts, mode)
    for ids, code in blocks_of(parts[0], TEXTS):
        block, ideal = coder.measured_block(ids, code)
        # its length is sent beside it, so it may end a few bits short of the ideal
        assert ideal - 8 <= 8 * len(block.payload) <= ideal + 32


def test_the_prior_codes_the_text_it_knows_below_the_raw_ids(parts):
    codec = parts[0]
    coder = coder_of(parts, "prior")
    ((ids, code),) = blocks_of(codec, [TEXTS[0] + " " + TEXTS[1]])
    block = coder.encode_block(ids, code)
    raw = (len(ids) - 2) * torch.log2(torch.tensor(float(codec.module.encoder.vocab_size)))
    assert 8 * len(block.payload) < 0.5 * float(raw)


def test_another_prior_is_refused_by_its_fingerprint(parts):
    codec, _, ckpts = parts
    file = coder_of(parts, "prior").encode_file(blocks_of(codec, TEXTS[:1]))
    other = load_module(str(ckpts["prior"]), key="prior")
    with torch.no_grad():
        next(other.net.parameters()).add_(1e-3)
    frame = Frame(codec.tokenizer.cls_token_id, codec.tokenizer.sep_token_id)
    coder = ExactCoder("prior", frame, codec.module.encoder.vocab_size, prior=other)
    with pytest.raises(ValueError, match="prior fingerprint"):
        coder.decode_file(file)


def test_other_exponents_fail_the_crc_instead_of_decoding_other_ids(parts):
    codec = parts[0]
    file = coder_of(parts, "product", alpha=1.0, beta=1.0).encode_file(blocks_of(codec, TEXTS))
    altered = ExactFile("product", 0.25, 3.0, file.prior_fingerprint, file.blocks)
    with pytest.raises(ValueError, match="CRC32"):
        coder_of(parts, "product").decode_file(ExactFile.from_bytes(altered.to_bytes()))


def test_a_damaged_payload_under_a_valid_file_crc_fails_the_ids_crc(parts):
    codec = parts[0]
    coder = coder_of(parts, "prior")
    (block,) = coder.encode_file(blocks_of(codec, TEXTS[:1])).blocks
    payload = bytearray(block.payload)
    payload[0] ^= 0xFF
    damaged = ExactBlock(block.n_tokens, block.code, bytes(payload), block.crc)
    with pytest.raises(ValueError, match="CRC32"):
        coder.decode_block(damaged)


def ckpt_args(parts) -> list[str]:
    _, _, ckpts = parts
    return [f"ckpt_path={ckpts['wavgpt']}", f"prior={ckpts['prior']}"]


def test_cli_roundtrip_prints_the_text_back_exactly(parts, made):
    entry = made[0]
    text = TEXTS[2]
    result = entry("wavgpt.codec", "roundtrip", *ckpt_args(parts), "exact=true", f"text={text}")
    assert result.returncode == 0, result.stderr[-3000:]
    expected = parts[0].tokenizer.decode(
        parts[0].tokenizer(text)["input_ids"], skip_special_tokens=True
    )
    assert f"decoded: {expected}\n" in result.stdout
    assert "the decoded ids are the text's" in result.stdout
    assert "payload" in result.stdout and "bits/token" in result.stdout


@pytest.mark.parametrize("mode", ["prior", "product"])
def test_cli_encodes_in_one_process_and_decodes_in_another_with_other_threads(
    parts, made, tmp_path, mode
):
    entry = made[0]
    out = tmp_path / "code.wavx"
    args = ckpt_args(parts)
    enc = entry(
        "wavgpt.codec",
        "encode",
        *args,
        "exact=true",
        f"exact_mode={mode}",
        f"out={out}",
        f"text={TEXTS[0]}",
        OMP_NUM_THREADS="1",
    )
    assert enc.returncode == 0, enc.stderr[-3000:]
    assert base64.b64decode(enc.stdout.split()[0]) == out.read_bytes()
    dec = entry("wavgpt.codec", "decode", *args, f"code_file={out}", OMP_NUM_THREADS="2")
    assert dec.returncode == 0, dec.stderr[-3000:]
    assert dec.stdout.strip() == TEXTS[0]


def test_cli_refuses_a_cut_or_damaged_exact_code_in_one_line(parts, made, tmp_path):
    entry = made[0]
    out = tmp_path / "code.wavx"
    args = ckpt_args(parts)
    enc = entry("wavgpt.codec", "encode", *args, "exact=true", f"out={out}", f"text={TEXTS[1]}")
    assert enc.returncode == 0, enc.stderr[-3000:]
    data = out.read_bytes()
    cut = tmp_path / "cut.wavx"
    cut.write_bytes(data[:-7])
    assert_clean_error(entry("wavgpt.codec", "decode", *args, f"code_file={cut}"), "code_file")
    # a payload byte flipped and the file's CRC32 made to match: only the ids' CRC32 can tell
    file = ExactFile.from_bytes(data)
    block = file.blocks[0]
    payload = bytearray(block.payload)
    payload[-1] ^= 0x55
    damaged = ExactBlock(block.n_tokens, block.code, bytes(payload), block.crc)
    body = ExactFile(file.mode, file.alpha, file.beta, file.prior_fingerprint, (damaged,))
    bad = tmp_path / "bad.wavx"
    bad.write_bytes(body.to_bytes())
    assert zlib.crc32(bad.read_bytes()[:-4]).to_bytes(4, "little") == bad.read_bytes()[-4:]
    line = assert_clean_error(
        entry("wavgpt.codec", "decode", *args, f"code_file={bad}"), "code_file"
    )
    assert "CRC32" in line


def test_cli_names_the_mode_a_missing_prior_needs(parts, made):
    entry = made[0]
    _, _, ckpts = parts
    result = entry(
        "wavgpt.codec", "roundtrip", f"ckpt_path={ckpts['wavgpt']}", "exact=true", "text=the lab"
    )
    assert_clean_error(result, "exact_mode='product'", "prior=")
