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
    # 2.5 blocks per chunk: chunks across block boundaries, the last one partial
    monkeypatch.setattr(wavgpt_module, "LIVE_TEACHER_ROWS", 5 * T // 2)
    chunked = module.teacher(batch, h)
    assert chunked.idx.shape == whole.idx.shape == (5, T, module.cfg.kd_top_k)
    assert torch.equal(chunked.idx, whole.idx)
    for name in ("logp", "rest_logp", "ce"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name))


def test_the_tied_head_s_chunked_loss_trains_as_the_loss_of_its_whole_logits(tiny_encoder_dir):
    torch.manual_seed(0)
    module = tiny_module(tiny_encoder_dir, head="tied")
    rows = blocks(4)
    batch = {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
    h = module.hidden_states(batch)
    assert module.tied_loss(module.teacher(batch, h))
    results = []
    for tied in (True, False):
        module.tied_loss = lambda teacher, tied=tied: tied  # the whole-logits path when False
        module.zero_grad()
        loss = module._shared_step(batch, "train")
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.core.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads, module.metrics["train_acc"].compute()))
        module.metrics["train_acc"].reset()
    (loss, grads, acc), (loss_ref, grads_ref, acc_ref) = results
    torch.testing.assert_close(loss, loss_ref)
    assert acc == acc_ref and grads.keys() == grads_ref.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], atol=1e-5, rtol=1e-4)
