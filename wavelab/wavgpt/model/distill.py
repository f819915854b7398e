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

# Positions whose logits or gradient over the vocabulary are computed at once (a temporary of
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


def _scaled_exp(z: Tensor, peak: Tensor, tau: float, out: Tensor | None = None) -> Tensor:
    """e = exp((z - peak) / tau), in (0, 1] for peak = max z; into ``out`` if given."""
    return torch.add(-peak / tau, z, alpha=1 / tau, out=out).exp_()


def _row_sums(e: Tensor, idx: Tensor, tau: float) -> tuple[Tensor, Tensor, Tensor]:
    """From e (..., V): S_tau = sum e, e at the teacher's top K (..., K), and S_1 = sum e^tau =
    sum exp(z - peak), the latter without a (..., V) temporary at tau = 2."""
    with torch.autocast(e.device.type, enabled=False):  # which would take einsum to bf16
        s_1 = torch.einsum("...v,...v->...", e, e) if tau == 2 else e.pow(tau).sum(-1)
    return e.sum(-1), e.gather(-1, idx), s_1  # float32 sums: exact enough, faster than float64


def _kl_and_ce(
    sums: tuple[Tensor, Tensor, Tensor], peak, z_top, z_target, logp, rest_logp, tau: float
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """(B, T) sparse KL and CE from ``_row_sums``, the peak (B, T, 1), the logits of the
    teacher's top K (B, T, K) and of the target (B, T), and the teacher's ``logp`` and
    ``rest_logp``; and what the gradient needs besides e."""
    s_tau, e_top, s_1 = sums
    q_rest = (1.0 - e_top.sum(-1) / s_tau).clamp(min=_MIN_REST)
    # From the logits, not log(e_top): e underflows to 0 for a token more than ~100·tau
    # below the student's peak, and log 0 made the KL inf (a sharp student, seen in training).
    log_q_top = (z_top - peak) / tau - s_tau.log()[..., None]  # (B, T, K)
    p_top, p_rest = logp.exp(), rest_logp.exp()
    kl = (p_top * (logp - log_q_top)).sum(-1)
    kl = kl + torch.where(p_rest > 0, p_rest * (rest_logp - q_rest.log()), 0.0)
    ce = peak[..., 0] + s_1.log() - z_target
    return kl, ce, (s_tau, s_1, e_top, q_rest, p_top, p_rest)


def _grad_terms(
    g_kl: Tensor, g_ce: Tensor, saved: tuple[Tensor, ...], tau: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per position, what turns e into the gradient of sum(g_kl·KL + g_ce·CE) in the logits
    (``_grad_rows_``): a and b (N, 1) and the top K's correction (N, K), N positions."""
    s_tau, s_1, e_top, q_rest, p_top, p_rest = saved
    c = 1.0 - p_rest / q_rest  # (B, T): outside the top K
    a = g_kl * c / (tau * s_tau)  # q_tau * c / tau
    b = g_ce / s_1  # q_1
    # Inside the top K: (q_j - p_j) / tau instead of q_j * c / tau.
    q_top = e_top / s_tau[..., None]
    top = g_kl[..., None] * ((q_top * (1.0 - c[..., None]) - p_top) / tau)
    return a.reshape(-1, 1), b.reshape(-1, 1), top.flatten(0, -2)


def _grad_rows_(e: Tensor, a, b, top, idx, ids, g_ce, tau: float) -> Tensor:
    """The gradient in the logits of rows e (rows, V), written into e: the dense part
    e * (a + b * e^(tau-1)), then the top K's (rows, K) and the target's (rows,) corrections."""
    e.mul_(torch.addcmul(a, b, e) if tau == 2 else a + e.pow(tau - 1) * b)
    e.scatter_add_(-1, idx, top)
    return e.scatter_add_(-1, ids[:, None], -g_ce[:, None].to(e.dtype))


def _head_dtype(x: Tensor, weight: Tensor) -> torch.dtype:
    """The dtype of x @ weight.T here: autocast's where it is on (the backward recomputes these
    logits outside autocast, so it casts to this explicitly)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(x.dtype, weight.dtype)


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
        e = _scaled_exp(z, peak, tau)  # (B, T, V)
        z_top, z_target = z.gather(-1, idx), z.gather(-1, ids[..., None])[..., 0]
        sums = _row_sums(e, idx, tau)
        kl, ce, saved = _kl_and_ce(sums, peak, z_top, z_target, logp, rest_logp, tau)
        ctx.save_for_backward(e, *saved, idx, ids)
        ctx.tau = tau
        return kl, ce

    @staticmethod
    def backward(ctx, g_kl: Tensor, g_ce: Tensor):
        e, *saved, idx, ids = ctx.saved_tensors
        a, b, top = _grad_terms(g_kl, g_ce, tuple(saved), ctx.tau)
        # e becomes the gradient in place, nothing reading it after: one (B, T, V) tensor.
        rows = e.view(-1, e.shape[-1])
        idx, ids, g_ce = idx.flatten(0, -2), ids.flatten(), g_ce.flatten()
        for i in range(0, len(rows), _ROWS):
            r = slice(i, i + _ROWS)
            _grad_rows_(rows[r], a[r], b[r], top[r], idx[r], ids[r], g_ce[r], ctx.tau)
        return e.to(ctx.logits_dtype), None, None, None, None, None


class _TiedSparseKDAndCE(torch.autograd.Function):
    """``_SparseKDAndCE`` of the logits h @ weight.T, made _ROWS positions at a time and never
    held whole. With ``recompute``, the backward makes each chunk's logits again, so no
    (B, T, V) tensor is held, for one more head matmul per step; without it, the forward keeps
    their exponentials e (4·B·T·V bytes) for the backward. Also returns the argmax (B, T)."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, idx, logp, rest_logp, ids, tau, recompute):
        ctx.h_dtype, ctx.head_dtype = h.dtype, _head_dtype(h, weight)
        (b, t, d), k, n = h.shape, idx.shape[-1], h.shape[0] * h.shape[1]
        x, w = h.detach().reshape(n, d), weight.detach()
        x_head, w_head = x.to(ctx.head_dtype), w.to(ctx.head_dtype)
        peak = x.new_empty(n, 1, dtype=torch.float32)
        z_top, z_target = peak.new_empty(n, k), peak.new_empty(n)
        s_tau, e_top, s_1 = peak.new_empty(n), peak.new_empty(n, k), peak.new_empty(n)
        kept = None if recompute else peak.new_empty(n, weight.shape[0])
        predicted = idx.new_empty(n)
        flat_idx, flat_ids = idx.reshape(n, k), ids.reshape(n, 1)
        for i in range(0, n, _ROWS):
            r = slice(i, i + _ROWS)
            z = (x_head[r] @ w_head.T).float()  # (rows, V): softmaxes in float32, as above
            peak[r], predicted[r] = z.amax(-1, keepdim=True), z.argmax(-1)
            z_top[r], z_target[r] = z.gather(-1, flat_idx[r]), z.gather(-1, flat_ids[r])[:, 0]
            e = _scaled_exp(z, peak[r], tau, out=z if kept is None else kept[r])
            s_tau[r], e_top[r], s_1[r] = _row_sums(e, flat_idx[r], tau)
        sums = (s_tau.view(b, t), e_top.view(b, t, k), s_1.view(b, t))
        peak_bt, z_top, z_target = peak.view(b, t, 1), z_top.view(b, t, k), z_target.view(b, t)
        kl, ce, saved = _kl_and_ce(sums, peak_bt, z_top, z_target, logp, rest_logp, tau)
        ctx.save_for_backward(x, w, peak, kept, *saved, flat_idx, flat_ids[:, 0])
        ctx.tau = tau
        ctx.mark_non_differentiable(predicted)
        return kl, ce, predicted.view(b, t)

    @staticmethod
    def backward(ctx, g_kl: Tensor, g_ce: Tensor, _g_predicted):
        x, w, peak, kept, *saved, idx, ids = ctx.saved_tensors
        a, b, top = _grad_terms(g_kl, g_ce, tuple(saved), ctx.tau)
        if kept is None:  # the forward's matmul operands, cast once
            x_head, w_head = x.to(ctx.head_dtype), w.to(ctx.head_dtype)
        w_grad, g_ce, g_x = w.float(), g_ce.flatten(), x.new_empty(x.shape, dtype=torch.float32)
        for i in range(0, len(x), _ROWS):
            r = slice(i, i + _ROWS)
            if kept is None:
                z = (x_head[r] @ w_head.T).float()
                e = _scaled_exp(z, peak[r], ctx.tau, out=z)  # the forward's e, bit for bit
            else:
                e = kept[r]  # becomes the gradient in place: nothing reads it after this
            grad = _grad_rows_(e, a[r], b[r], top[r], idx[r], ids[r], g_ce[r], ctx.tau)
            g_x[r] = grad @ w_grad
        return g_x.view(g_kl.shape + x.shape[-1:]).to(ctx.h_dtype), *(None,) * 7


def sparse_kd_and_ce(
    student_logits: Tensor, teacher: TeacherTopK, tau: float, input_ids: Tensor
) -> tuple[Tensor, Tensor]:
    """(B, T) sparse KL at tau (module docstring) and (B, T) cross-entropy against the ids at 1,
    of the student's (B, T, V) logits, in a few passes over the vocabulary."""
    return _SparseKDAndCE.apply(
        student_logits, teacher.idx, teacher.logp, teacher.rest_logp, input_ids, tau
    )


def tied_sparse_kd_and_ce(
    h: Tensor,
    weight: Tensor,
    teacher: TeacherTopK,
    tau: float,
    input_ids: Tensor,
    recompute: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """``sparse_kd_and_ce(h @ weight.T, ...)`` and the (B, T) argmax of those logits, without
    ever holding them whole; ``recompute``: nor their exponentials, which the backward then
    makes again. ``weight`` (V, d) is frozen: no gradient reaches it."""
    if weight.requires_grad:
        raise ValueError("tied_sparse_kd_and_ce: the head's weight must be frozen")
    return _TiedSparseKDAndCE.apply(
        h, weight, teacher.idx, teacher.logp, teacher.rest_logp, input_ids, tau, recompute
    )
