"""Tiny real runs through the CLI, for the entry, bad-input and security tests."""

from __future__ import annotations

from pathlib import Path

from helpers.cli import Entry
from wavelab.data.corpora import shakespeare_complete_works

# A 1-layer, 32-wide GPT on 32-character windows: two steps and one validation in seconds.
TINY_GPT = [
    "model=gpt",
    "model.net.n_layer=1",
    "model.net.n_embd=32",
    "model.net.n_head=2",
    "data.block_size=32",
    "data.batch_size=4",
    "data.num_val_windows=8",
    "trainer.accelerator=cpu",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.num_sanity_val_steps=0",
    "model.scheduler.warmup_steps=1",
    "callbacks.samples=null",
]


def write_corpus(path: Path) -> Path:
    """The first 1,000,000 characters of the complete works."""
    path.write_text(shakespeare_complete_works()[:1_000_000])
    return path


def tiny_gpt_run(entry: Entry, corpus: Path, *extra: str):
    """A real two-step GPT run in ``entry``'s dir; returns (its run dir, the process)."""
    entry.cwd.mkdir(parents=True, exist_ok=True)
    result = entry("run", *TINY_GPT, f"data.path={corpus}", *extra)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (run_dir,) = (entry.cwd / "logs" / "train" / "runs").iterdir()
    return run_dir, result


def tiny_run_in(root: Path, cache_dir: Path, corpus_name: str = "corpus.txt") -> tuple[Path, Path]:
    """A real two-step GPT run under ``root`` on a corpus at ``root/corpus_name``, for a test
    module's fixture to damage copies of: (its run dir, the corpus)."""
    corpus = root / corpus_name
    corpus.parent.mkdir(parents=True, exist_ok=True)
    run_dir, _ = tiny_gpt_run(Entry(root / "work", cache_dir), write_corpus(corpus))
    return run_dir, corpus
