"""``trainer.enable_progress_bar=false``, a documented switch, turns the progress bar off."""

from __future__ import annotations

from helpers.tiny_runs import tiny_gpt_run, write_corpus


def test_enable_progress_bar_false_runs_without_one(entry, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    _, result = tiny_gpt_run(entry, corpus, "trainer.enable_progress_bar=false")
    out = result.stdout + result.stderr
    assert "Lightning refuses" not in out
    assert "step 2/2" not in out  # the StepProgressBar's line
