"""ScreenedArgmax: the int8-screened argmax equals the fp32 logits' argmax."""

import pytest
import torch

from wavelab.wavgpt.model.encoder import DEFAULT_ENCODER, FrozenEncoder, load_tokenizer
from wavelab.wavgpt.model.screened_argmax import ScreenedArgmax

pytestmark = pytest.mark.usefixtures("single_thread")


def plain_argmax(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (x @ weight.T).argmax(-1)


def clear_winners(x: torch.Tensor, weight: torch.Tensor, gap: float = 1e-3) -> torch.Tensor:
    """Rows whose best score beats the runner-up by more than fp32 rounding could blur."""
    top2 = (x.double() @ weight.double().T).topk(2, dim=-1).values
    return top2[:, 0] - top2[:, 1] > gap


@pytest.mark.parametrize("n", [1, 16, 17, 100])
def test_equals_the_plain_argmax_on_random_states(n):
    g = torch.Generator().manual_seed(n)
    weight, x = torch.randn(3000, 48, generator=g), torch.randn(n, 48, generator=g)
    got, want = ScreenedArgmax(weight)(x), plain_argmax(x, weight)
    assert got.dtype == torch.int64 and got.shape == (n,)
    clear = clear_winners(x, weight)
    assert clear.float().mean() > 0.9  # the check below compares almost every row
    assert torch.equal(got[clear], want[clear])
    # Near-ties may break either way, but only between scores equal to fp32 rounding.
    scores = x.double() @ weight.double().T
    assert torch.allclose(scores.gather(1, got[:, None]), scores.max(1, keepdim=True).values)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_blocks_bound_is_at_least_each_of_its_tokens_bounds(sign):
    """The screen skips a block on its one bound, so it must bound every token's own fp32 bound:
    rows of very different norms, and (sign -1) every score negative, where a block's tokens
    with the smallest scale have the highest bounds."""
    g = torch.Generator().manual_seed(6)
    weight = torch.rand(2000, 32, generator=g) * torch.rand(2000, 1, generator=g) ** 2
    x = sign * torch.rand(50, 32, generator=g)
    screen = ScreenedArgmax(weight)
    products, _, slack, block_bound = screen._bounds(x)
    n, blocks, width = products.shape
    rows, block = torch.arange(n).repeat_interleave(blocks), torch.arange(blocks).repeat(n)
    tokens = screen._token_bounds(products.flatten(0, 1), slack[rows], block).view(n, blocks, width)
    assert (block_bound >= tokens.amax(2)).all()
    assert torch.equal(screen(x), plain_argmax(x, weight))


def test_outlier_dimensions_and_uneven_rows():
    """BERT-like states: a few dimensions 50× the rest, weight rows of very different norms."""
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(5000, 64, generator=g) * torch.rand(5000, 1, generator=g) ** 3
    x = torch.randn(200, 64, generator=g)
    x[:, [3, 40]] *= 50
    got, clear = ScreenedArgmax(weight)(x), clear_winners(x, weight)
    assert clear.all() and torch.equal(got, plain_argmax(x, weight))


def test_ties_pick_the_lowest_index_like_tensor_argmax():
    weight = torch.randn(300, 16, generator=torch.Generator().manual_seed(2))
    weight[200] = weight[100] = weight[250]  # three identical rows
    x = weight[250].repeat(4, 1) * torch.tensor([[1.0], [2.0], [0.5], [3.0]])
    assert ScreenedArgmax(weight)(x).tolist() == [100] * 4 == plain_argmax(x, weight).tolist()


def test_zero_and_non_finite_states_behave_as_the_plain_argmax():
    weight = torch.randn(400, 16, generator=torch.Generator().manual_seed(3))
    x = torch.randn(20, 16, generator=torch.Generator().manual_seed(4))
    x[0] = 0.0  # every score is 0: the first token
    assert ScreenedArgmax(weight)(x)[0] == 0 == plain_argmax(x, weight)[0]
    assert ScreenedArgmax(weight)(x[:0]).shape == (0,)
    x[5, 7] = float("nan")  # NaN scores: the plain path, whatever it answers
    assert torch.equal(ScreenedArgmax(weight)(x), plain_argmax(x, weight))


def test_the_packaged_minilm_head_reads_back_the_same_tokens(monkeypatch):
    """The real tied head (30,522 × 384) on the real encoder's states, and on perturbed ones (a
    decoder's output is never the encoder's own state), through the int8 screen."""
    int8_products = []
    int_mm = torch._int_mm
    monkeypatch.setattr(
        torch, "_int_mm", lambda a, b: int8_products.append(a.shape) or int_mm(a, b)
    )
    encoder, tokenizer = FrozenEncoder(DEFAULT_ENCODER), load_tokenizer(DEFAULT_ENCODER)
    text = "Shall I compare thee to a summer's day? Thou art more lovely and more temperate."
    batch = tokenizer([text], return_tensors="pt")
    h = encoder.hidden(batch["input_ids"], batch["attention_mask"])[0]  # (n, 384)
    noisy = h + 0.5 * torch.randn(h.shape, generator=torch.Generator().manual_seed(5))
    for states in (h, noisy):
        want = encoder.logits(states).argmax(-1)
        assert torch.equal(encoder.argmax(states), want)
    assert len(int8_products) == 2  # the screen ran: no silent fall-back to the fp32 logits
