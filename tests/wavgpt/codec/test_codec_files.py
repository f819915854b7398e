"""The codec's file arguments: an input is a regular file, and ``out=`` never replaces the
checkpoint or a file that is not a code, never blocks on a FIFO, and fails in one line on a full
or read-only disk, leaving what was there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.cli import assert_clean_error
from helpers.mounts import fill_up, read_only_dir, tmpfs
from helpers.wavgpt_checkpoint import fit_checkpoint

from wavelab.wavgpt.codec import WavGPTCodec


@pytest.fixture(scope="module")
def files(tiny_encoder_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("codec_files")
    ckpt = root / "tiny.ckpt"
    fit_checkpoint(tiny_encoder_dir, ckpt, keep_ratio=0.25)
    code = root / "old_code.bin"
    code.write_bytes(WavGPTCodec.from_checkpoint(ckpt).encode(["old"])[0].to_bytes())
    return {"ckpt": ckpt, "code": code}


def encode(entry, ckpt, out, *extra):
    return entry(
        "wavgpt.codec", "encode", f"ckpt_path={ckpt}", "text=hi", f"out={out}", *extra, timeout=60
    )


def test_out_is_never_the_checkpoint(entry, files):
    before = files["ckpt"].read_bytes()
    assert_clean_error(encode(entry, files["ckpt"], files["ckpt"]), "out=", "tiny.ckpt", "input")
    assert files["ckpt"].read_bytes() == before


def test_out_refuses_an_existing_file_that_is_not_a_code(entry, files, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    line = assert_clean_error(encode(entry, files["ckpt"], notes), "out=", "notes.txt")
    assert "overwrite=true" in line
    assert notes.read_text() == "my notes\n"


def test_out_replaces_an_earlier_code_and_with_overwrite_any_file(entry, files, tmp_path):
    old = tmp_path / "code.bin"
    old.write_bytes(files["code"].read_bytes())
    result = encode(entry, files["ckpt"], old)
    assert result.returncode == 0, result.stderr[-2000:]
    assert old.read_bytes() != files["code"].read_bytes()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    result = encode(entry, files["ckpt"], notes, "overwrite=true")
    assert result.returncode == 0, result.stderr[-2000:]
    assert notes.read_bytes() == old.read_bytes()


def test_out_a_fifo_is_refused_without_blocking(entry, files, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_clean_error(encode(entry, files["ckpt"], fifo), "out=", "FIFO", "regular file")


def test_out_dev_full_is_refused(entry, files):
    assert_clean_error(encode(entry, files["ckpt"], "/dev/full"), "out=", "/dev/full", "device")


def test_out_in_a_read_only_dir(entry, files, tmp_path):
    with read_only_dir(tmp_path / "ro") as ro:
        assert_clean_error(encode(entry, files["ckpt"], ro / "c.bin"), "out=", "read-only")
        assert not (ro / "c.bin").exists()


def test_out_on_a_full_disk_keeps_the_old_code(entry, files, tmp_path):
    with tmpfs(tmp_path / "full", size="64k") as full:
        old = full / "code.bin"
        old.write_bytes(files["code"].read_bytes())
        fill_up(full)
        line = assert_clean_error(encode(entry, files["ckpt"], old), "out=", "disk is full")
        assert "as it was" in line
        assert old.read_bytes() == files["code"].read_bytes()
        assert sorted(p.name for p in full.iterdir()) == ["code.bin", "filler"]


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda d: Path("/dev/zero"), "character device"),
        (lambda d: (os.mkfifo(d / "pipe"), d / "pipe")[1], "FIFO"),
        (lambda d: d, "directory"),
    ],
    ids=["dev_zero", "fifo", "directory"],
)
def test_code_file_must_be_a_regular_file(entry, files, tmp_path, make, kind):
    path = make(tmp_path)
    result = entry(
        "wavgpt.codec", "decode", f"ckpt_path={files['ckpt']}", f"code_file={path}", timeout=60
    )
    line = assert_clean_error(result, "code_file", str(path), kind, "regular file")
    assert "no such file" not in line
