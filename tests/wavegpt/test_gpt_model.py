"""The GPT / WaveGPT nn.Module: causality, equivalence at init, generation, config errors."""

from __future__ import annotations

import math

import pytest
import torch

from wavelab.callbacks.throughput import flops_per_token
from wavelab.core.errors import ConfigError
from wavelab.wavegpt.model import GPT, GPTConfig, WaveNetConfig
from wavelab.wavegpt.module import LanguageModelModule

T, V = 16, 23


def make(mode: str | None, seed: int = 0, **wavenet) -> GPT:
    torch.manual_seed(seed)
    wn = None if mode is None else WaveNetConfig(mode=mode, **wavenet)
    model = GPT(GPTConfig(block_size=T, vocab_size=V, n_layer=2, n_head=2, n_embd=16, wavenet=wn))
    if mode is not None:
        # A zero gate would hide the branch from every test below.
        with torch.no_grad():
            model.wavenet_gate.normal_()
    return model.eval()


def tokens(seed: int, shape=(2, T)) -> torch.Tensor:
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", [None, "prev_block", "causal"])
@pytest.mark.parametrize("t", [0, 5, T - 2])
def test_no_position_sees_the_future(mode, t):
    model = make(mode)
    x, prev = tokens(1), tokens(2)
    x2 = x.clone()
    x2[:, t + 1 :] = (x2[:, t + 1 :] + 1 + tokens(3)[:, t + 1 :] % (V - 1)) % V  # all changed
    assert (x2[:, t + 1 :] != x[:, t + 1 :]).all()
    a, _ = model(x, prev_idx=prev)
    b, _ = model(x2, prev_idx=prev)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_block_mode_leaks_the_future_and_needs_the_flag():
    with pytest.raises(ConfigError, match="allow_future_leak"):
        make("block")
    with pytest.warns(UserWarning, match="leaks future tokens"):
        model = make("block", allow_future_leak=True)
    x = tokens(1)
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % V  # change only the last token
    a, _ = model(x)
    b, _ = model(x2)
    assert not torch.allclose(a[:, 0], b[:, 0]), (
        "position 0 should see the last token in block mode"
    )


def test_prev_block_reads_the_preceding_tokens():
    model = make("prev_block")
    x, prev = tokens(1), tokens(2)
    a, _ = model(x, prev_idx=prev)
    b, _ = model(x, prev_idx=torch.roll(prev, 1, dims=1))
    c, _ = model(x, prev_idx=torch.full_like(prev, -1))  # start of the stream: zero embeddings
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError, match="prev_idx"):
        model(x)


@pytest.mark.parametrize("mode", ["prev_block", "causal"])
def test_wavegpt_with_zero_gate_equals_gpt(mode):
    gpt = make(None, seed=5)
    wave = make(mode, seed=6)
    missing, unexpected = wave.load_state_dict(gpt.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("wavenet") for k in missing)
    with torch.no_grad():
        wave.wavenet_gate.zero_()
    x, prev = tokens(1), tokens(2)
    torch.testing.assert_close(wave(x, prev_idx=prev)[0], gpt(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["prev_block", "causal"])
def test_fresh_wavegpt_from_the_gpts_seed_is_the_gpt(mode):
    # Like for like: the same seed gives the same trunk, and the zero gate hides the branch.
    def build(wavenet: WaveNetConfig | None) -> GPT:
        torch.manual_seed(0)
        return GPT(
            GPTConfig(block_size=T, vocab_size=V, n_layer=2, n_head=2, n_embd=16, wavenet=wavenet)
        )

    gpt, wave = build(None), build(WaveNetConfig(mode=mode))
    assert torch.count_nonzero(wave.wavenet_gate) == 0
    for name, p in gpt.state_dict().items():
        torch.testing.assert_close(wave.state_dict()[name], p, rtol=0, atol=0)
    x, prev = tokens(1), tokens(2)
    torch.testing.assert_close(wave(x, prev_idx=prev)[0], gpt(x)[0], rtol=0, atol=0)
    # ...but the branch itself is alive: its output is not crushed by GPT-2's small init, so
    # the gate gets a useful gradient from the first step.
    branch = wave.branch(wave.transformer.wte(x), prev)
    assert branch.std().item() > 1e-2
    _, loss = wave(x, x, prev_idx=prev)
    loss.backward()
    assert wave.wavenet_gate.grad.abs().max().item() > 1e-4


def test_receptive_field_covers_the_block():
    cfg = GPTConfig(block_size=64, vocab_size=V, wavenet=WaveNetConfig())
    assert cfg.wavenet.n_layers == 6 and cfg.wavenet.receptive_field() == 64


@pytest.mark.parametrize("mode", [None, "prev_block", "causal"])
def test_generate_beyond_the_block(mode):
    model = make(mode)
    out = model.generate(
        tokens(1, (1, T + 5)),
        max_new_tokens=T + 3,
        top_k=5,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (1, 2 * T + 8)
    assert 0 <= out.min() and out.max() < V


def test_optimizer_groups_partition_parameters():
    model = make("prev_block")
    groups = model.optimizer_groups(weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert all(p.dim() >= 2 for p in groups[0]["params"])
    assert any(p is model.wavenet_gate for p in groups[1]["params"])


def test_weight_tying_and_gpt2_init():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=T, vocab_size=V, n_layer=8, n_embd=64, n_head=4))
    assert model.lm_head.weight is model.transformer.wte.weight
    proj = model.transformer.h[0].attn.c_proj.weight
    assert proj.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_embd": 30, "n_head": 4}, r"n_embd=30 .*divisible by .*n_head=4"),
        ({"wavenet": {"mode": "sideways"}}, r"mode='sideways' is invalid: allowed are prev_block"),
        ({"dropout": 1.5}, r"dropout=1.5 is invalid"),
        ({"wavenet": {"channels": 0}}, r"wavenet.channels=0 is invalid: must be a positive"),
        ({"n_head": 0}, r"model\.net\.n_head=0 is invalid: must be a positive integer"),
    ],
)
def test_bad_configs_name_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GPTConfig(**{"block_size": T, "vocab_size": V, **kwargs})


def test_flops_per_token_count_every_matmul_weight_once_and_no_position_table():
    net = {"block_size": 16, "vocab_size": 50, "n_layer": 2, "n_head": 2, "n_embd": 8}
    module = LanguageModelModule(net=net, optimizer={}, scheduler={})
    every_weight = sum(p.numel() for p in module.net.parameters())  # the tied head once
    assert module.net.num_params() == every_weight - 16 * 8
    assert flops_per_token(module) == 6 * (every_weight - 16 * 8) + 12 * 2 * 8 * 16
