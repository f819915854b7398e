"""The models the codec and study tests decode with, trained once by the real entry point."""

from __future__ import annotations

import pytest
from helpers.cli import Entry
from helpers.small import tiny_wavgpt_run

# "the wave let lab" again and again: a prior trained on it knows what follows what.
PATTERN = "the wave let lab text is in a lab of the wave.\n"


@pytest.fixture(scope="session")
def made(tmp_path_factory, tiny_encoder_dir, corpus_file):
    """A tiny GPT prior on the tiny encoder's WordPiece, a char-level GPT, and a tiny WavGPT
    run, all by the real entry point."""
    root = tmp_path_factory.mktemp("prior")
    (root / "work").mkdir()
    entry = Entry(root / "work", root / "cache")
    (root / "pattern.txt").write_text(PATTERN * 400)
    gpt = [
        "model=gpt",
        "model.net.n_layer=1",
        "model.net.n_embd=32",
        "model.net.n_head=2",
        "data.block_size=16",
        "data.batch_size=8",
        "data.num_val_windows=8",
        "trainer.val_check_interval=60",
        "model.scheduler.warmup_steps=5",
    ]
    runs = {
        "prior": [
            *gpt,
            "data=shakespeare_wordpiece_lm",
            f"data.wordpiece_from={tiny_encoder_dir}",
            f"data.path={root / 'pattern.txt'}",
            "trainer.max_steps=120",
        ],
        "char": [
            *gpt,
            f"data.path={root / 'pattern.txt'}",
            "trainer.max_steps=5",
            "trainer.val_check_interval=5",
        ],
        "wavgpt": tiny_wavgpt_run(tiny_encoder_dir, corpus_file),
    }
    ckpts = {}
    for name, args in runs.items():
        result = entry("run", *args, f"hydra.run.dir={root / name}")
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        ckpts[name] = root / name / "checkpoints" / "last.ckpt"
    return entry, ckpts, root
