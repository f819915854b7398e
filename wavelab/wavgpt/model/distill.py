"""Distillation from a frozen teacher head, over the whole vocabulary or over its top K.

The teacher is frozen, so what the student needs from it per token fits in a few numbers: the
K most likely tokens, their log-probabilities at the KD temperature tau, and the log of the mass
of all other tokens (the "rest" bucket). ``TeacherTopK`` holds them; a teacher cache stores them
once per block (``wavelab.wavgpt.data.teacher_cache``), so training never runs the encoder or the
teacher's 30,522-wide softmax again.

Sparse KD is the exact KL divergence between the two distributions coarsened to K + 1 outcomes
(the teacher's top K, and everything else):

    KL_K = sum_{i in top K} p_i (log p_i - log q_i) + p_rest (log p_rest - log q_rest)

with q the student's softmax at tau over the full vocabulary, so q_rest = 1 - sum_{i in K} q_i.
It equals the full KL when K covers the vocabulary (p_rest = 0), and is never larger than it
(coarsening can only lose information); the gap is the teacher's rest mass times the divergence
*within* the rest, which is what a top-K teacher does not say.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

# q_rest = 1 - sum_K q loses its digits when the top K hold nearly all of the student's mass;
# below this the student's rest mass is taken to be this (it only matters where the teacher's
# rest mass is itself negligible).
_MIN_REST = 1e-6

# Positions whose gradient over the vocabulary the backward computes at once (a temporary of
# this many rows of V floats).
_ROWS = 128


@dataclass
class TeacherTopK:
    """What sparse KD needs from the teacher, per token; (B, T, K) and (B, T) tensors."""

    idx: Tensor  # (B, T, K) long: its K most likely tokens, the most likely first
    logp: Tensor  # (B, T, K) their log-probabilities at the KD temperature
    rest_logp: Tensor  # (B, T) log of the probability of every other token (-inf: none left)
    ce: Tensor  # (B, T) its cross-entropy against the input ids at temperature 1

    @classmethod
    def cat(cls, parts: list[TeacherTopK]) -> TeacherTopK:
        """The positions of ``parts`` (along their first dimension), in order."""
        return cls(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def unflatten(self, shape: torch.Size) -> TeacherTopK:
        """Positions (N, ...) as ``shape`` (B, T) positions."""
        return TeacherTopK(*(getattr(self, f.name).unflatten(0, shape) for f in fields(self)))

    @property
    def argmax(self) -> Tensor:
        """(B, T) the teacher's most likely token."""
        return self.idx[..., 0]


def teacher_topk(logits: Tensor, k: int, tau: float, input_ids: Tensor) -> TeacherTopK:
    """The teacher's top K at temperature tau from its full (B, T, V) logits.

    Two passes over the vocabulary, in place: e = exp((z - max) / tau), then e^tau = exp(z - max)
    for the cross-entropy. The rest bucket is the sum of e minus the very e values of the top K:
    the mass of the other tokens up to float32 rounding of the sum (~1e-7 of the whole); a rest
    below _MIN_REST is taken as none (-inf)."""
    z = logits.detach().float()
    top, idx = z.topk(k, dim=-1)  # sorted: the most likely first
    peak = top[..., :1]  # (B, T, 1): the largest logit
    e = torch.add(-peak / tau, z, alpha=1 / tau).exp_()  # (B, T, V) in (0, 1]
    total = e.sum(-1)  # (B, T)
    log_total = total.log()
    logp = (top - peak) / tau - log_total[..., None]
    rest = total - e.gather(-1, idx).sum(-1)
    # A rest below _MIN_REST of the whole is float32 rounding (K covering V leaves ~1e-7): none.
    rest_logp = torch.where(rest > _MIN_REST * total, rest, 0.0).log() - log_total
    target = z.gather(-1, input_ids[..., None])[..., 0]
    total_at_1 = e.pow_(tau).sum(-1)  # sum exp(z - max)
    ce = peak[..., 0] + total_at_1.log() - target
    return TeacherTopK(idx, logp, rest_logp, ce)


def full_kl(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
    """(B, T) KL(p_teacher || q_student) at temperature tau over the whole vocabulary."""
    log_q = F.log_softmax(student_logits / tau, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach() / tau, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _kl_and_ce(
    e: Tensor, peak: Tensor, z_top: Tensor, z_target: Tensor, idx, logp, rest_logp, tau: float
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """(B, T) sparse KL and CE from e = exp((z - peak) / tau) (B, T, V), the peak (B, T, 1), the
    logits of the teacher's top K (B, T, K) and of the target (B, T), and the teacher's top K
    (``TeacherTopK``'s fields); and what the backward needs besides e."""
    s_tau = e.sum(-1)  # (B, T); float32 sums are exact enough, and faster than float64
    e_top = e.gather(-1, idx)  # (B, T, K)
    q_rest = (1.0 - e_top.sum(-1) / s_tau).clamp(min=_MIN_REST)
    # From the logits, not log(e_top): e underflows to 0 for a token more than ~100·tau
    # below the student's peak, and log 0 made the KL inf (a sharp student, seen in training).
    log_q_top = (z_top - peak) / tau - s_tau.log()[..., None]  # (B, T, K)
    p_top, p_rest = logp.exp(), rest_logp.exp()
    kl = (p_top * (logp - log_q_top)).sum(-1)
    kl = kl + torch.where(p_rest > 0, p_rest * (rest_logp - q_rest.log()), 0.0)
    # s_1 = sum exp(z - peak) = sum e^tau, without a (B, T, V) temporary at tau = 2
    s_1 = torch.einsum("...v,...v->...", e, e) if tau == 2 else e.pow(tau).sum(-1)
    ce = peak[..., 0] + s_1.log() - z_target
    return kl, ce, (s_tau, s_1, q_rest, p_top, p_rest)


def _logits_grad(
    e: Tensor, g_kl: Tensor, g_ce: Tensor, saved: tuple[Tensor, ...], tau: float
) -> Tensor:
    """The (B, T, V) gradient of sum(g_kl·KL + g_ce·CE) in the logits, written into e."""
    s_tau, s_1, q_rest, p_top, p_rest, idx, ids = saved
    c = 1.0 - p_rest / q_rest  # (B, T): outside the top K
    a = (g_kl * c / (tau * s_tau))[..., None]  # q_tau * c / tau
    b = (g_ce / s_1)[..., None]  # q_1
    # Inside the top K: (q_j - p_j) / tau instead of q_j * c / tau.
    q_top = e.gather(-1, idx) / s_tau[..., None]
    top = g_kl[..., None] * ((q_top * (1.0 - c[..., None]) - p_top) / tau)
    # The dense part e * (a + b * e^(tau-1)) overwrites e, which nothing reads after this,
    # _ROWS positions at a time: the backward then holds one (B, T, V) tensor, not two.
    rows, a, b = e.view(-1, e.shape[-1]), a.reshape(-1, 1), b.reshape(-1, 1)
    for i in range(0, len(rows), _ROWS):
        part, a_i, b_i = rows[i : i + _ROWS], a[i : i + _ROWS], b[i : i + _ROWS]
        factor = torch.addcmul(a_i, b_i, part) if tau == 2 else a_i + part.pow(tau - 1) * b_i
        part.mul_(factor)
    e.scatter_add_(-1, idx, top)
    e.scatter_add_(-1, ids[..., None], -g_ce[..., None].float())
    return e


class _SparseKDAndCE(torch.autograd.Function):
    """Per-token sparse KL (at tau) and cross-entropy (at 1) of the student's (B, T, V) logits,
    with a hand-written backward that makes few passes over the vocabulary.

    Both softmaxes come from one e = exp((z - max) / tau): q_tau = e / S_tau and
    q_1 = e^tau / S_1. The gradients (module docstring for KL_K; CE is the usual one) are

        dKL_K/dz_j = (q_j * c - p_j [j in K]) / tau    (for j in K: (q_j - p_j) / tau)
        dCE/dz_j   = q1_j - [j = y]

    with c = 1 - p_rest / q_rest outside the top K and 1 inside, so the dense part of the
    gradient is e * (a + b * e^(tau-1)) with a, b one number per token, and the top K and the
    target add sparse corrections. Autograd through logsumexp, gather and log-softmax would make
    about ten (B, T, V) passes and temporaries for the same result.
    """

    @staticmethod
    def forward(
        ctx, z: Tensor, idx: Tensor, logp: Tensor, rest_logp: Tensor, ids: Tensor, tau: float
    ):
        ctx.logits_dtype = z.dtype
        z = z.detach().float()  # softmaxes in float32, also under bf16/fp16 autocast
        peak = z.amax(dim=-1, keepdim=True)  # (B, T, 1)
        e = torch.add(-peak / tau, z, alpha=1 / tau).exp_()  # (B, T, V) in (0, 1]
        z_top, z_target = z.gather(-1, idx), z.gather(-1, ids[..., None])[..., 0]
        kl, ce, saved = _kl_and_ce(e, peak, z_top, z_target, idx, logp, rest_logp, tau)
        ctx.save_for_backward(e, *saved, idx, ids)
        ctx.tau = tau
        return kl, ce

    @staticmethod
    def backward(ctx, g_kl: Tensor, g_ce: Tensor):
        e, *saved = ctx.saved_tensors
        grad = _logits_grad(e, g_kl, g_ce, tuple(saved), ctx.tau)
        return grad.to(ctx.logits_dtype), None, None, None, None, None


class _TiedSparseKDAndCE(torch.autograd.Function):
    """``_SparseKDAndCE`` of the logits h @ weight.T, which it makes _ROWS positions at a time
    and never holds whole: only e, which the backward needs, is (B, T, V). Also returns the
    student's argmax (B, T)."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, idx, logp, rest_logp, ids, tau: float):
        ctx.h_dtype = h.dtype
        (b, t, d), (v, k) = h.shape, (weight.shape[0], idx.shape[-1])
        x, w, n = h.detach().reshape(-1, d), weight.detach(), b * t
        e = h.new_empty(n, v, dtype=torch.float32)
        peak, z_top = e.new_empty(n, 1), e.new_empty(n, k)
        z_target, predicted = e.new_empty(n), idx.new_empty(n)
        flat_idx, flat_ids = idx.reshape(n, k), ids.reshape(n, 1)
        for i in range(0, n, _ROWS):
            rows = slice(i, i + _ROWS)
            z = (x[rows] @ w.T).float()  # (rows, V): softmaxes in float32, as above
            top = z.amax(-1, keepdim=True)
            peak[rows], predicted[rows] = top, z.argmax(-1)
            z_top[rows] = z.gather(-1, flat_idx[rows])
            z_target[rows] = z.gather(-1, flat_ids[rows])[:, 0]
            torch.exp(z.mul_(1 / tau).add_(-top / tau), out=e[rows])  # as _SparseKDAndCE's e
        e, peak = e.view(b, t, v), peak.view(b, t, 1)
        z_top, z_target = z_top.view(b, t, k), z_target.view(b, t)
        kl, ce, saved = _kl_and_ce(e, peak, z_top, z_target, idx, logp, rest_logp, tau)
        ctx.save_for_backward(e, *saved, idx, ids, weight)
        ctx.tau = tau
        ctx.mark_non_differentiable(predicted)
        return kl, ce, predicted.view(b, t)

    @staticmethod
    def backward(ctx, g_kl: Tensor, g_ce: Tensor, _g_predicted):
        e, *saved, weight = ctx.saved_tensors
        grad = _logits_grad(e, g_kl, g_ce, tuple(saved), ctx.tau)  # (B, T, V)
        g_h = grad.view(-1, grad.shape[-1]) @ weight.detach().to(grad.dtype)
        return g_h.view(*grad.shape[:-1], -1).to(ctx.h_dtype), None, None, None, None, None, None


def sparse_kd_and_ce(
    student_logits: Tensor, teacher: TeacherTopK, tau: float, input_ids: Tensor
) -> tuple[Tensor, Tensor]:
    """(B, T) sparse KL at tau (module docstring) and (B, T) cross-entropy against the ids at 1,
    of the student's (B, T, V) logits, in a few passes over the vocabulary."""
    return _SparseKDAndCE.apply(
        student_logits, teacher.idx, teacher.logp, teacher.rest_logp, input_ids, tau
    )


def tied_sparse_kd_and_ce(
    h: Tensor, weight: Tensor, teacher: TeacherTopK, tau: float, input_ids: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``sparse_kd_and_ce(h @ weight.T, ...)`` and the (B, T) argmax of those logits, without
    ever holding them whole: the tied head's loss in half the memory. ``weight`` (V, d) is
    frozen: no gradient reaches it."""
    if weight.requires_grad:
        raise ValueError("tied_sparse_kd_and_ce: the head's weight must be frozen")
    return _TiedSparseKDAndCE.apply(
        h, weight, teacher.idx, teacher.logp, teacher.rest_logp, input_ids, tau
    )
