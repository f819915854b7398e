"""argmax_v ⟨x, w_v⟩ over a large output matrix, exact, with an int8 screen on CPU.

Decoding a WavGPT code ends in the frozen head's argmax over the vocabulary: for MiniLM's tied
head a (N, 384) × (384, 30,522) fp32 matmul, most of the decoder's time on a CPU. Almost every
token of the vocabulary loses by a wide margin, so it is enough to know a bound on each score:

1. Quantize x per row (scale σ_t) and W per row (scale s_v) to int8 and multiply in int32
   (``torch._int_mm``: VNNI on x86, several times the fp32 matmul's speed).
2. With x_i = σ q_i + δ_i, |δ_i| ≤ σ/2 and w_i = s q'_i + ε_i, |ε_i| ≤ s/2, rounding to nearest,

       |⟨x, w⟩ − σ s ⟨q, q'⟩| ≤ s·‖x‖₁/2 + σ·‖w‖₁/2 + d·σ·s/4,

   an upper bound U_tv on every score from the integer product.
3. Any exact score is a lower bound on the row's maximum; take a token whose bound is highest.
   Every token with U_tv below it can not be the argmax. The survivors (a small fraction of the
   vocabulary for MiniLM's states) are scored exactly in fp32.

Working U_tv out for all V tokens in float costs as much as the int8 product itself, so the rows
are stored sorted by scale in blocks of 64: a block's largest integer product, with its extreme
scale and half L1 norm, bounds all its tokens at once, and U_tv is worked out only in the blocks
whose bound reaches the guess (a few per state); the guess is the best-bounded
token of the 4 best-bounded blocks.

The result is the exact argmax up to fp32 rounding (two fp32 sums of the same products in another
order differ by ~1e-7 of their magnitude, so a tie that close may break either way, as it would
between two BLAS libraries); on equal scores the lowest index wins, as with ``Tensor.argmax``.
Inputs the screen does not cover (other devices or dtypes, non-finite values) take the plain fp32
matmul and argmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

INT8_MAX = 127
# Headroom for the fp32 rounding of the bound itself, relative to Σ|x_i w_i| ≤ ‖x‖₁·max|w|
# (fp32 sums of d=384 products are within ~2e-5 of that; the margin is 5× more).
ROUNDING_MARGIN = 1e-4
BLOCK = 64  # vocabulary tokens per block of the screen's first pass
GUESS_BLOCKS = 4  # the highest-bounded blocks whose tokens are bounded one by one for a guess
_MIN_ROWS = 17  # torch._int_mm on CPU needs more than 16 rows; shorter inputs are padded


def _int8_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8: (q (n, d) int8, scale (n,) float32) with x ≈ scale·q."""
    scale = x.abs().amax(1) / INT8_MAX
    q = torch.round(x / scale.clamp_min(torch.finfo(x.dtype).tiny)[:, None])
    return q.to(torch.int8), scale


class ScreenedArgmax:
    """``ScreenedArgmax(weight)(x)`` == ``(x @ weight.T).argmax(-1)`` for x (N, d), weight (V, d).

    Holds an int8 copy of ``weight`` (V·d bytes) and its per-row scales and half L1 norms; the
    weight is frozen, so they are computed once. The rows are stored sorted by scale, in blocks of
    ``BLOCK`` (the last one padded with rows whose bound is -inf): the tokens of a block have
    nearly the same scale, so one bound per block, from the block's largest int8 product, is
    almost as tight as its tokens' own, and the per-token bounds are worked out in float only
    inside the few blocks that could hold the winner.
    """

    def __init__(self, weight: Tensor) -> None:
        self.weight = weight.detach().float()
        self.vocab = len(self.weight)
        pad = -self.vocab % BLOCK
        q, scale = _int8_rows(self.weight)  # (V, d), (V,)
        order = scale.argsort(descending=True, stable=True)  # (V,) the stored rows, by scale
        self.token = F.pad(order, (0, pad), value=self.vocab)  # (V',) stored row -> token id
        self.q_t = F.pad(q[order], (0, 0, 0, pad)).T.contiguous()  # (d, V'): _int_mm's layout
        self.scale = F.pad(scale[order], (0, pad)).view(-1, BLOCK)  # (V'/BLOCK, BLOCK)
        half_l1 = self.weight.abs().sum(1)[order] / 2
        self.half_l1 = F.pad(half_l1, (0, pad), value=-torch.inf).view(-1, BLOCK)
        self.block_scale_max, self.block_scale_min = self.scale.amax(1), self.scale.amin(1)
        self.block_half_l1 = self.half_l1.amax(1)  # (V'/BLOCK,)
        self.abs_max = float(self.weight.abs().max())

    def covers(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.device == x.device
            and bool(torch.isfinite(x).all())
        )

    def int8_product(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (n, d) fp32 -> (⟨q_t, q'_v⟩ (n, V') int32 over the stored rows, σ (n,)): the
        screen's one pass over the whole vocabulary, and the most of its cost."""
        n = len(x)
        # One int8 product for all rows: _int_mm repacks its right operand on every call.
        q, sigma = _int8_rows(F.pad(x, (0, 0, 0, max(0, _MIN_ROWS - n))))
        return torch._int_mm(q, self.q_t)[:n], sigma[:n]

    def _token_bounds(self, products: Tensor, slack: Tensor, blocks: Tensor) -> Tensor:
        """The bound on ⟨x_t, w_v⟩/σ_t of each token of some blocks: products (m, BLOCK) int32,
        slack (m, 1), blocks (m,) -> (m, BLOCK)."""
        return (products.float() + slack) * self.scale[blocks] + self.half_l1[blocks]

    def _bounds(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x (n, d) -> the int8 products (n, V'/BLOCK, BLOCK), σ (n,), the slack (n, 1) of the
        bound above divided by σ_t,

            ⟨x_t, w_v⟩/σ_t ≤ s_v·(⟨q_t, q'_v⟩ + slack_t) + ‖w_v‖₁/2,

        and each block's bound on its tokens' (n, V'/BLOCK)."""
        n, d = x.shape
        product, sigma = self.int8_product(x)
        sigma = sigma.clamp_min(torch.finfo(x.dtype).tiny)
        slack = (x.abs().sum(1) / (2 * sigma) + d / 4)[:, None]
        # A block's largest product with its extreme scale (the lowest where the factor is
        # negative) and its largest half L1 norm. fp32 rounding is monotone, so this also bounds
        # the tokens' own fp32 bounds, worked out in the same order.
        products = product.view(n, -1, BLOCK)
        top = products.amax(2).float() + slack  # (n, V'/BLOCK)
        scale = torch.where(top >= 0, self.block_scale_max, self.block_scale_min)
        return products, sigma, slack, top * scale + self.block_half_l1

    def __call__(self, x: Tensor) -> Tensor:
        """x (N, d) -> (N,) int64 token ids."""
        if not self.covers(x) or len(x) == 0:
            return (x.float() @ self.weight.T.to(x.device)).argmax(-1)
        n = len(x)
        products, sigma, slack, block_bound = self._bounds(x)
        # The token with the highest bound in the few highest-bounded blocks is the likeliest
        # winner: its exact score (less the bound's rounding margin) is at most the row's
        # maximum, and no token whose bound is below it can win. (The one highest-bounded block
        # is often a loose one: the largest-scale tokens' half L1 norms differ most.)
        k = min(GUESS_BLOCKS, block_bound.shape[1])
        top_blocks = block_bound.topk(k, dim=1).indices.flatten()  # (n·k,)
        top_rows = torch.arange(n).repeat_interleave(k)  # (n·k,)
        top_bounds = self._token_bounds(products[top_rows, top_blocks], slack[top_rows], top_blocks)
        pick = top_bounds.view(n, k * BLOCK).argmax(1)  # (n,) within each row's k blocks
        pick_block = top_blocks.view(n, k)[torch.arange(n), pick // BLOCK]
        guess = self.token[pick_block * BLOCK + pick % BLOCK]  # (n,) token ids
        margin = ROUNDING_MARGIN * x.abs().sum(1) * self.abs_max / sigma  # (n,)
        floor = (x * self.weight[guess]).sum(1) / sigma - margin  # (n,)
        cand_rows, cand_blocks = (block_bound >= floor[:, None]).nonzero(as_tuple=True)
        bounds = self._token_bounds(
            products[cand_rows, cand_blocks], slack[cand_rows], cand_blocks
        )  # (m, BLOCK)
        which, offset = (bounds >= floor[cand_rows, None]).nonzero(as_tuple=True)
        rows = cand_rows[which]
        cols = self.token[cand_blocks[which] * BLOCK + offset]  # every guess is here
        exact = (x[rows] * self.weight[cols]).sum(1)  # the survivors' scores
        best = torch.full((n,), -torch.inf).scatter_reduce(0, rows, exact, "amax")
        # The lowest token id among the row's best scores, as Tensor.argmax picks.
        winner = torch.where(exact == best[rows], cols, self.vocab)
        return torch.full((n,), self.vocab).scatter_reduce(0, rows, winner, "amin")
