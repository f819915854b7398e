"""Bad input to ``python -m wavelab.wavgpt.codec`` and ``python -m wavelab.wavgpt.plots``, as a user gives it:
exit code 2, one line naming the key or file and the bad value, no traceback, nothing written."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.cli import assert_clean_error
from helpers.wavgpt_checkpoint import fit_checkpoint
from torch.utils.data import DataLoader

from wavelab.wavegpt.module import LanguageModelModule
from wavelab.wavgpt.codec import WavGPTCodec


@pytest.fixture(scope="module")
def files(tiny_encoder_dir, tmp_path_factory) -> dict[str, Path | str]:
    """Checkpoints and codes the cases point at, made once for the module."""
    root = tmp_path_factory.mktemp("bad_codec")
    ckpt, other = root / "ckpts" / "tiny.ckpt", root / "other" / "other.ckpt"
    fit_checkpoint(tiny_encoder_dir, ckpt, keep_ratio=0.25)
    fit_checkpoint(tiny_encoder_dir, other, steps=1, keep_ratio=0.25)  # same encoder and shape
    code = WavGPTCodec.from_checkpoint(other).encode(["the wave lab"])[0].to_bytes()

    def write(name: str, data: bytes) -> Path:
        (root / name).write_bytes(data)
        return root / name

    corrupt = bytearray(code)
    corrupt[-6] ^= 0xFF  # a value byte: only the checksum can tell
    huge = struct.pack("<4sBBBBBHHHII8s", b"WAVC", 3, 16, 0, 0, 0, 65535, 65535, 1, 0, 1, bytes(8))
    huge_v1 = struct.pack("<4sBBBBHHHI", b"WAVC", 1, 0b100, 0, 0, 65535, 65535, 1, 0)
    return {
        "ckpt": ckpt,
        "gpt_ckpt": gpt_checkpoint(root / "gpt.ckpt"),
        "text_ckpt": write("notes.ckpt", b"just some text\n"),
        "truncated_ckpt": write("cut.ckpt", ckpt.read_bytes()[:5000]),
        "text_file": write("text.txt", b"To be, or not to be\n\nthat is the question\n" * 20),
        "other_code": write("other.bin", code),
        "corrupt_b64": base64.b64encode(corrupt).decode(),
        "truncated_code": write("truncated.bin", code[:-3]),
        "huge": write("huge.bin", huge + struct.pack("<I", zlib.crc32(huge))),
        "huge_v1": write("huge_v1.bin", huge_v1 + struct.pack("<I", zlib.crc32(huge_v1))),
    }


def gpt_checkpoint(path: Path) -> Path:
    """A language model's checkpoint (one real training step): the wrong model for codec/plots."""
    torch.manual_seed(0)
    module = LanguageModelModule(
        net={"block_size": 8, "vocab_size": 16, "n_layer": 1, "n_head": 1, "n_embd": 8},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3},
        scheduler={"warmup_steps": 0, "decay_steps": 1, "min_lr": 1e-4},
    )
    x = torch.randint(0, 16, (4, 9))
    data = DataLoader(list(zip(torch.full((4, 8), -1), x[:, :-1], x[:, 1:])), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=path.parent,
    )
    trainer.fit(module, data)
    trainer.save_checkpoint(path)
    return path


# (entry, arguments with {placeholders} from `files`, names the error line must hold)
CASES = {
    "codec-no-ckpt_path": ("wavgpt.codec", ["encode", "text=hi"], ["ckpt_path"]),
    "codec-ckpt-missing": (
        "wavgpt.codec",
        ["encode", "ckpt_path=/no/such.ckpt", "text=hi"],
        ["ckpt_path", "/no/such.ckpt"],
    ),
    "codec-ckpt-is-text": pytest.param(
        "wavgpt.codec",
        ["encode", "ckpt_path={text_ckpt}", "text=hi"],
        ["ckpt_path", "notes.ckpt"],
    ),
    "codec-ckpt-truncated": pytest.param(
        "wavgpt.codec",
        ["encode", "ckpt_path={truncated_ckpt}", "text=hi"],
        ["ckpt_path", "cut.ckpt"],
    ),
    "codec-gpt-ckpt": (
        "wavgpt.codec",
        ["encode", "ckpt_path={gpt_ckpt}", "text=hi"],
        ["ckpt_path", "gpt.ckpt", "LanguageModelModule", "wavelab.sample"],
    ),
    "codec-unknown-verb": ("wavgpt.codec", ["compress", "ckpt_path={ckpt}"], ["verb", "compress"]),
    "codec-no-verb": ("wavgpt.codec", ["ckpt_path={ckpt}", "text=hi"], ["verb", "encode, decode"]),
    "codec-encode-no-text": ("wavgpt.codec", ["encode", "ckpt_path={ckpt}"], ["text"]),
    "codec-code-and-code_file": (
        "wavgpt.codec",
        ["decode", "ckpt_path={ckpt}", "code={corrupt_b64}", "code_file={other_code}"],
        ["code=", "code_file="],
    ),
    "codec-decode-no-code": (
        "wavgpt.codec",
        ["decode", "ckpt_path={ckpt}"],
        ["code=", "code_file="],
    ),
    "codec-invalid-base64": (
        "wavgpt.codec",
        ["decode", "ckpt_path={ckpt}", "code=not base64!"],
        ["code=", "not base64"],
    ),
    "codec-bad-checksum": (
        "wavgpt.codec",
        ["decode", "ckpt_path={ckpt}", "code={corrupt_b64}"],
        ["code=", "checksum"],
    ),
    "codec-truncated-code": (
        "wavgpt.codec",
        ["decode", "ckpt_path={ckpt}", "code_file={truncated_code}"],
        ["code_file", "truncated.bin", "length"],
    ),
    "codec-code_file-missing": (
        "wavgpt.codec",
        ["decode", "ckpt_path={ckpt}", "code_file=/no/such.bin"],
        ["code_file", "/no/such.bin", "no such file"],
    ),
    "codec-code-from-another-checkpoint": (
        "wavgpt.codec",
        ["decode", "ckpt_path={ckpt}", "code_file={other_code}"],
        ["code_file", "other.bin", "compressor fingerprint"],
    ),
    "codec-huge-shape": (
        "wavgpt.codec",
        ["decode", "ckpt_path={ckpt}", "code_file={huge}"],
        ["code_file", "huge.bin", "65535", "16777216"],
    ),
    "codec-version-1": (
        "wavgpt.codec",
        ["decode", "ckpt_path={ckpt}", "code_file={huge_v1}"],
        ["code_file", "huge_v1.bin", "version 1"],
    ),
    "codec-out-is-a-dir": (
        "wavgpt.codec",
        ["encode", "ckpt_path={ckpt}", "text=hi", "out=/"],
        ["out=", "directory"],
    ),
    "codec-out-dir-missing": (
        "wavgpt.codec",
        ["encode", "ckpt_path={ckpt}", "text=hi", "out=/no/such/dir/code.bin"],
        ["out=", "/no/such/dir"],
    ),
    "codec-device-bogus": (
        "wavgpt.codec",
        ["encode", "ckpt_path={ckpt}", "text=hi", "device=bogus"],
        ["device", "bogus"],
    ),
    "codec-unknown-key": pytest.param(
        "wavgpt.codec",
        ["encode", "ckpt_path={ckpt}", "text=hi", "colour=red"],
        ["colour"],
    ),
    "plots-no-ckpt_path": ("wavgpt.plots", [], ["ckpt_path"]),
    "plots-ckpt-missing": (
        "wavgpt.plots",
        ["ckpt_path=/no/such.ckpt"],
        ["ckpt_path", "/no/such.ckpt"],
    ),
    "plots-ckpt-is-text": pytest.param(
        "wavgpt.plots", ["ckpt_path={text_ckpt}"], ["ckpt_path", "notes.ckpt"]
    ),
    "plots-gpt-ckpt": (
        "wavgpt.plots",
        ["ckpt_path={gpt_ckpt}", "text_file={text_file}"],
        ["ckpt_path", "gpt.ckpt", "LanguageModelModule"],
    ),
    "plots-out-under-a-file": (
        "wavgpt.plots",
        ["ckpt_path={ckpt}", "text_file={text_file}", "out={text_file}/plots"],
        ["out=", "text.txt", "is a file"],
    ),
    "plots-text_file-missing": (
        "wavgpt.plots",
        ["ckpt_path={ckpt}", "text_file=/no/such.txt"],
        ["text_file", "/no/such.txt"],
    ),
    "plots-blocks-zero": ("wavgpt.plots", ["ckpt_path={ckpt}", "blocks=0"], ["blocks", "0"]),
    "plots-blocks-not-a-number": (
        "wavgpt.plots",
        ["ckpt_path={ckpt}", "blocks=abc"],
        ["blocks", "abc"],
    ),
    "plots-device-bogus": (
        "wavgpt.plots",
        ["ckpt_path={ckpt}", "device=bogus"],
        ["device", "bogus"],
    ),
}


def _case(value):
    return value if isinstance(value, type(pytest.param())) else pytest.param(*value)


@pytest.mark.parametrize(
    ("name", "args", "names"), [_case(c) for c in CASES.values()], ids=list(CASES)
)
def test_bad_input_is_one_clear_line(entry, files, name, args, names):
    args = [a.format(**files) for a in args]
    watched = {files["ckpt"].parent, files["text_file"].parent}
    before = entry.files() | {p for d in watched for p in d.rglob("*")}
    result = entry(name, *args)
    assert_clean_error(result, *(n.format(**files) for n in names))
    assert entry.files() | {p for d in watched for p in d.rglob("*")} == before
