"""WavGPTModule's live teacher: computed a few blocks at a time, as if computed whole."""

from __future__ import annotations

import torch
from helpers.wavgpt_checkpoint import T, blocks, tiny_module

import wavelab.wavgpt.module as wavgpt_module
from wavelab.wavgpt.model.distill import teacher_topk


def test_the_live_teacher_in_chunks_equals_the_teacher_of_the_whole_batch(
    tiny_encoder_dir, monkeypatch
):
    module = tiny_module(tiny_encoder_dir).eval()
    rows = blocks(5)
    batch = {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
    h = module.hidden_states(batch)
    with torch.no_grad():
        whole = teacher_topk(
            module.encoder.logits(h),
            module.cfg.kd_top_k,
            module.cfg.kd_temperature,
            batch["input_ids"],
        )
    # two blocks per chunk: chunks of 2, 2 and 1
    monkeypatch.setattr(wavgpt_module, "LIVE_TEACHER_LOGITS", 2 * T * module.encoder.vocab_size)
    chunked = module.teacher(batch, h)
    assert chunked.idx.shape == whole.idx.shape == (5, T, module.cfg.kd_top_k)
    assert torch.equal(chunked.idx, whole.idx)
    for name in ("logp", "rest_logp", "ce"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name))
