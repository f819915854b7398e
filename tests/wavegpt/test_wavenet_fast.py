"""The WaveNet branch: its layers are true dilated causal convolutions, and forward_last must
equal the last position of the full forward, exactly."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from wavelab.wavegpt.model import GPT, GPTConfig, WaveNetBranch, WaveNetConfig, WaveNetLayer

C = 16


def branch(n_layers: int, dtype: torch.dtype = torch.float64, scale: float | None = 0.5):
    torch.manual_seed(0)
    net = WaveNetBranch(C, WaveNetConfig(n_layers=n_layers, channels=8)).to(dtype)
    if scale is not None:
        # Large weights and biases everywhere: a layer's output before the sequence start is
        # then far from zero, which is what forward_last must not let leak into later layers.
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0.0, scale)
    return net


@pytest.mark.parametrize("dilation", [1, 2, 8])
def test_layer_is_a_gated_dilated_causal_conv1d(dilation):
    # The reference is torch's own Conv1d arithmetic (kernel 2, left padding by the dilation),
    # with the layer's taps [x(t - d), x(t)] as the kernel's two positions.
    torch.manual_seed(0)
    ch, T = 6, 20
    layer = WaveNetLayer(ch, dilation).double()
    x = torch.randn(2, T, ch, dtype=torch.float64)
    kernel = layer.dilated.weight.reshape(2 * ch, 2, ch).transpose(1, 2)  # (out, in, tap)
    h = F.conv1d(
        F.pad(x.transpose(1, 2), (dilation, 0)), kernel, layer.dilated.bias, dilation=dilation
    ).transpose(1, 2)
    z_ref = torch.tanh(h[..., :ch]) * torch.sigmoid(h[..., ch:])
    x_next, z = layer(x)
    torch.testing.assert_close(z, z_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(x_next, x + layer.residual(z_ref), atol=1e-12, rtol=0)
    # Causal: position t depends on inputs <= t only.
    x2 = x.clone()
    x2[:, 12:] += 1.0
    torch.testing.assert_close(layer(x2)[1][:, :12], z[:, :12], atol=0, rtol=0)
    assert not torch.allclose(layer(x2)[1][:, 12:], z[:, 12:])


# T equal to, shorter than (padding), longer than (cropping) the receptive field 2^n_layers.
CASES = [(6, 64), (6, 1), (6, 37), (3, 8), (3, 5), (3, 20)]


@pytest.mark.parametrize(("n_layers", "T"), CASES)
def test_forward_last_is_the_full_forwards_last_position(n_layers, T):
    # float64, so that only a different computation, not rounding, could show up.
    net = branch(n_layers)
    emb = torch.randn(3, T, C, dtype=torch.float64, requires_grad=True)
    full = net(emb)[:, -1:]
    fast = net.forward_last(emb)
    assert fast.shape == (3, 1, C)
    torch.testing.assert_close(fast, full, atol=1e-10, rtol=0)

    # The gradients agree too, for the input and every weight; the last layer's residual
    # output feeds nothing, so both give its weights None.
    g = torch.randn_like(full)
    inputs = [emb, *net.parameters()]
    grads_full = torch.autograd.grad((full * g).sum(), inputs, allow_unused=True)
    grads_fast = torch.autograd.grad((fast * g).sum(), inputs, allow_unused=True)
    for a, b in zip(grads_fast, grads_full):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize(("n_layers", "T"), CASES)
def test_forward_last_in_float32_at_training_init(n_layers, T):
    net = branch(n_layers, torch.float32, scale=None)
    emb = torch.randn(3, T, C)
    torch.testing.assert_close(net.forward_last(emb), net(emb)[:, -1:], atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["prev_block", "block"])
def test_gpt_branch_uses_the_last_position(mode):
    torch.manual_seed(0)
    wn = WaveNetConfig(mode=mode, allow_future_leak=mode == "block")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # block mode warns that it leaks; known here
        model = GPT(
            GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, n_embd=C, wavenet=wn)
        )
    with torch.no_grad():
        model.wavenet_gate.normal_()
    idx = torch.randint(0, 11, (2, 16))
    prev = torch.cat([torch.full((2, 5), -1), torch.randint(0, 11, (2, 11))], dim=1)
    emb = model._embed_tokens(prev) if mode == "prev_block" else model.transformer.wte(idx)
    torch.testing.assert_close(
        model.branch(model.transformer.wte(idx), prev),
        model.wavenet(emb)[:, -1:],
        atol=1e-6,
        rtol=0,
    )
