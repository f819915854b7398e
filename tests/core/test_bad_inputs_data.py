"""Bad corpora and data settings end in one clear line (exit 2), and nothing is cached for them."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.cli import assert_clean_error
from helpers.small import WAVGPT_SMALL

LM = ["model=gpt", "data.block_size=32", "data.batch_size=4", "model.net.n_layer=1"]
SHORT = "To be, or not to be, that is the question.\n"  # 43 characters


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# case id -> (file maker(work dir), extra overrides, names the error line must contain)
CASES = {
    "empty file": (lambda d: write(d / "empty.txt", b""), LM, ["data.path", "empty.txt", "empty"]),
    "blank file": (lambda d: write(d / "blank.txt", b"\n \n\t\n"), LM, ["data.path", "empty"]),
    "shorter than a block (char)": (
        lambda d: write(d / "short.txt", SHORT.encode()),
        LM,
        ["data.path", "short.txt", "data.block_size=32", "too short"],
    ),
    "fewer BPE tokens than a block": (  # enough characters, too few tokens once merged
        lambda d: write(d / "short.txt", (SHORT * 2).encode()),
        [*LM, "data.tokenizer=bpe", "data.bpe_vocab_size=300", "data.block_size=64"],
        ["data.path", "short.txt", "data.block_size=64", "too short", "training tokens"],
    ),
    "shorter than a batch (wordpiece)": (
        lambda d: write(d / "short.txt", SHORT.encode()),
        ["model=wavgpt", *WAVGPT_SMALL],
        ["data.path", "short.txt", "data.batch_size=4", "too short"],
    ),
    "latin-1 text": (
        lambda d: write(d / "latin1.txt", ("Café, naïve Þorn. " * 200).encode("latin-1")),
        LM,
        ["data.path", "latin1.txt", "UTF-8", "0xe9"],
    ),
    "binary file": (
        lambda d: write(d / "weights.bin", bytes(range(256)) * 64),
        LM,
        ["data.path", "weights.bin", "UTF-8"],
    ),
    "binary file that decodes as UTF-8": (
        lambda d: write(d / "zeros.bin", b"\x00" * 4096),
        LM,
        ["data.path", "zeros.bin", "binary"],
    ),
    "missing file": (lambda d: d / "nope.txt", LM, ["data.path", "nope.txt", "no such file"]),
    "directory": (lambda d: d, LM, ["data.path", "directory"]),
    "val_fraction 0": (None, [*LM, "data.val_fraction=0"], ["data.val_fraction=0"]),
    "val_fraction 1.5": (None, [*LM, "data.val_fraction=1.5"], ["data.val_fraction=1.5"]),
    "val_fraction 1.5 (wordpiece)": (
        None,
        ["model=wavgpt", *WAVGPT_SMALL, "data.val_fraction=1.5"],
        ["data.val_fraction=1.5"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_corpus_is_a_clean_error_and_caches_nothing(
    case, entry, tmp_path, corpus_file, request
):
    make_file, overrides, names = CASES[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = make_file(inputs) if make_file else corpus_file
    args = [*overrides, f"data.path={path}", "callbacks.progress_bar=null"]
    if "model=wavgpt" in overrides:
        args.append(f"model.encoder.name_or_path={request.getfixturevalue('tiny_encoder_dir')}")
    cached_before = {p for p in entry.files() if entry.cache_dir in p.parents}
    result = entry("run", *args)
    assert_clean_error(result, *names)
    cached_after = {p for p in entry.files() if entry.cache_dir in p.parents}
    assert cached_after == cached_before, sorted(cached_after - cached_before)
