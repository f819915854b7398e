"""argmax_v ⟨x, w_v⟩ over a large output matrix, exact, with an int8 screen on CPU.

Decoding a WavGPT code ends in the frozen head's argmax over the vocabulary: for MiniLM's tied
head a (N, 384) × (384, 30,522) fp32 matmul, most of the decoder's time on a CPU. Almost every
token of the vocabulary loses by a wide margin, so it is enough to know a bound on each score:

1. Quantize x per row (scale σ_t) and W per row (scale s_v) to int8 and multiply in int32
   (``torch._int_mm``: VNNI on x86, several times the fp32 matmul's speed).
2. With x_i = σ q_i + δ_i, |δ_i| ≤ σ/2 and w_i = s q'_i + ε_i, |ε_i| ≤ s/2, rounding to nearest,

       |⟨x, w⟩ − σ s ⟨q, q'⟩| ≤ s·‖x‖₁/2 + σ·‖w‖₁/2 + d·σ·s/4,

   an upper bound U_tv on every score from the integer product.
3. Any exact score is a lower bound on the row's maximum; take the token whose bound is highest.
   Every token with U_tv below it can not be the argmax. The survivors (a small fraction of the
   vocabulary for MiniLM's states) are scored exactly in fp32.

The result is the exact argmax up to fp32 rounding (two fp32 sums of the same products in another
order differ by ~1e-7 of their magnitude, so a tie that close may break either way, as it would
between two BLAS libraries); on equal scores the lowest index wins, as with ``Tensor.argmax``.
Inputs the screen does not cover (other devices or dtypes, non-finite values) take the plain fp32
matmul and argmax.
"""

from __future__ import annotations

import torch
from torch import Tensor

INT8_MAX = 127
# Headroom for the fp32 rounding of the bound itself, relative to Σ|x_i w_i| ≤ ‖x‖₁·max|w|
# (fp32 sums of d=384 products are within ~2e-5 of that; the margin is 5× more).
ROUNDING_MARGIN = 1e-4
BLOCK = 64  # vocabulary tokens per block of the screen's first pass
_MIN_ROWS = 17  # torch._int_mm on CPU needs more than 16 rows; shorter inputs are padded


def _int8_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8: (q (n, d) int8, scale (n,) float32) with x ≈ scale·q."""
    scale = x.abs().amax(1) / INT8_MAX
    q = torch.round(x / scale.clamp_min(torch.finfo(x.dtype).tiny)[:, None])
    return q.to(torch.int8), scale


class ScreenedArgmax:
    """``ScreenedArgmax(weight)(x)`` == ``(x @ weight.T).argmax(-1)`` for x (N, d), weight (V, d).

    Holds an int8 copy of ``weight`` (V·d bytes) and its per-row scales and half L1 norms; the
    weight is frozen, so they are computed once. The vocabulary is padded to whole blocks of
    ``BLOCK`` tokens whose bound is -inf, so that the screen can look at block maxima first.
    """

    def __init__(self, weight: Tensor) -> None:
        self.weight = weight.detach().float()
        self.vocab = len(self.weight)
        pad = -self.vocab % BLOCK
        q, scale = _int8_rows(self.weight)  # (V, d), (V,)
        self.q_t = torch.nn.functional.pad(q, (0, 0, 0, pad)).T.contiguous()  # (d, V'): _int_mm's
        self.scale = torch.nn.functional.pad(scale, (0, pad))  # (V',)
        self.half_l1 = torch.nn.functional.pad(
            self.weight.abs().sum(1) / 2, (0, pad), value=-torch.inf
        )
        self.abs_max = float(self.weight.abs().max())

    def covers(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.device == x.device
            and bool(torch.isfinite(x).all())
        )

    def int8_product(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (n, d) fp32 -> (⟨q_t, q'_v⟩ (n, V') int32, σ (n,)): the screen's one pass over the
        whole vocabulary, and the most of its cost."""
        n = len(x)
        # One int8 product for all rows: _int_mm repacks its right operand on every call.
        q, sigma = _int8_rows(torch.nn.functional.pad(x, (0, 0, 0, max(0, _MIN_ROWS - n))))
        return torch._int_mm(q, self.q_t)[:n], sigma[:n]

    def __call__(self, x: Tensor) -> Tensor:
        """x (N, d) -> (N,) int64 token ids."""
        if not self.covers(x) or len(x) == 0:
            return (x.float() @ self.weight.T.to(x.device)).argmax(-1)
        n, d = x.shape
        product, sigma = self.int8_product(x)
        upper = product.float()  # (n, V') = ⟨q_t, q'_v⟩
        sigma = sigma.clamp_min(torch.finfo(x.dtype).tiny)
        # The bound above divided by σ_t: ⟨x_t, w_v⟩/σ_t ≤ s_v·(⟨q_t, q'_v⟩ + slack_t) + ‖w_v‖₁/2.
        l1 = x.abs().sum(1)
        slack = l1 / (2 * sigma) + d / 4  # (n,)
        upper.add_(slack[:, None]).mul_(self.scale).add_(self.half_l1)  # (n, V')
        blocks = upper.view(n, -1, BLOCK)  # (n, V'/BLOCK, BLOCK)
        block_max = blocks.amax(2)  # (n, V'/BLOCK)
        # The token with the highest bound is the likeliest winner: its exact score (less the
        # bound's rounding margin) is at most the row's maximum, and no token whose bound is
        # below it can win.
        row = torch.arange(n)
        best_block = block_max.argmax(1)
        guess = best_block * BLOCK + blocks[row, best_block].argmax(1)
        margin = ROUNDING_MARGIN * l1 * self.abs_max / sigma  # (n,)
        floor = (x * self.weight[guess]).sum(1) / sigma - margin  # (n,)
        cand_rows, cand_blocks = (block_max >= floor[:, None]).nonzero(as_tuple=True)
        in_block = blocks[cand_rows, cand_blocks] >= floor[cand_rows, None]  # (m, BLOCK)
        which, offset = in_block.nonzero(as_tuple=True)
        rows, cols = cand_rows[which], cand_blocks[which] * BLOCK + offset  # every guess is here
        exact = (x[rows] * self.weight[cols]).sum(1)  # the survivors' scores
        best = torch.full((n,), -torch.inf).scatter_reduce(0, rows, exact, "amax")
        # The lowest index among the row's best scores, as Tensor.argmax picks.
        winner = torch.where(exact == best[rows], cols, self.vocab)
        return torch.full((n,), self.vocab).scatter_reduce(0, rows, winner, "amin")
