"""The cached decoder against the full forward pass, step by step, across the block boundary."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from wavelab.wavegpt import decode
from wavelab.wavegpt.model import GPT, GPTConfig, WaveNetConfig
from wavelab.wavegpt.sampling import window_and_prev

T, V = 16, 23
MODES = [None, "prev_block", "causal", "block"]


def make(mode: str | None, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    wn = None
    if mode is not None:
        wn = WaveNetConfig(mode=mode, n_layers=3, allow_future_leak=mode == "block")
    with pytest.warns(UserWarning) if mode == "block" else nullcontext():
        model = GPT(
            GPTConfig(block_size=T, vocab_size=V, n_layer=2, n_head=2, n_embd=16, wavenet=wn)
        )
    if mode is not None:
        with torch.no_grad():  # a zero gate would hide the branch
            model.wavenet_gate.normal_()
    return model.eval()


def full_logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    window, prev = window_and_prev(idx, T, model.mode == "prev_block")
    return model(window, prev_idx=prev)[0][:, -1]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("prompt", [1, 5, T])
def test_cached_logits_equal_the_full_pass_at_every_step(mode, prompt):
    model = make(mode)
    seq = torch.randint(0, V, (3, 2 * T + 3), generator=torch.Generator().manual_seed(1))
    decoder = decode.Decoder(model, batch=3)
    worst = 0.0
    for length in range(prompt, seq.size(1) + 1):
        cached = decoder.next_logits(seq[:, :length])
        worst = max(worst, (cached - full_logits(model, seq[:, :length])).abs().max().item())
        if length <= T:  # inside the block: one prime, then appends only
            assert decoder.primes == 1 and decoder.length == length
    assert worst <= 1e-5
    # past the block, each token re-primes on the cropped window
    assert decoder.primes == 1 + seq.size(1) - max(T, prompt)


@pytest.mark.parametrize("mode", MODES)
def test_cached_generation_draws_the_full_paths_tokens(mode):
    model = make(mode)
    prompt = torch.randint(0, V, (2, 3), generator=torch.Generator().manual_seed(2))
    runs = [
        fn(model, prompt, 2 * T, 1.0, 5, torch.Generator().manual_seed(7))
        for fn in (decode.generate, GPT.generate)
    ]
    assert runs[0].shape == (2, 3 + 2 * T)
    assert torch.equal(runs[0], runs[1])


def test_a_sequence_that_does_not_extend_the_last_one_re_primes():
    model = make("causal")
    seq = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(3))
    decoder = decode.Decoder(model, batch=1)
    decoder.next_logits(seq[:, :8])
    other = seq[:, :4]
    assert torch.allclose(decoder.next_logits(other), full_logits(model, other), atol=1e-5)
    assert decoder.primes == 2
