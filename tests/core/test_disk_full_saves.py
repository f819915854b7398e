"""A checkpoint save on a full disk ends the run in one line that names the file, and leaves the
checkpoint that was there, with no temp file behind."""

from __future__ import annotations

from helpers.cli import assert_clean_error
from helpers.mounts import fill_up, tmpfs
from helpers.tiny_runs import TINY_GPT, write_corpus


def test_disk_full_while_saving_keeps_the_previous_checkpoint(entry, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    with tmpfs(tmp_path / "ckpts", size="64k") as ckpts:
        previous = b"the previous last.ckpt" * 100
        (ckpts / "last.ckpt").write_bytes(previous)
        fill_up(ckpts)
        result = entry(
            "run",
            *TINY_GPT,
            f"data.path={corpus}",
            "callbacks.model_checkpoint=null",
            f"callbacks.last_checkpoint.dirpath={ckpts}",
        )
        line = assert_clean_error(result, "the disk is full", str(ckpts / "last.ckpt"))
        assert "is kept" in line
        assert (ckpts / "last.ckpt").read_bytes() == previous
        assert sorted(p.name for p in ckpts.iterdir()) == ["filler", "last.ckpt"]
