"""Distillation from a frozen teacher head, over the whole vocabulary or over its top K.

The teacher is frozen, so what the student needs from it per token fits in a few numbers: the
K most likely tokens, their log-probabilities at the KD temperature tau, and the log of the mass
of all other tokens (the "rest" bucket). ``TeacherTopK`` holds them; a teacher cache stores them
once per block (``wavelab.data.teacher_cache``), so training never runs the encoder or the
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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

KD_MODES = ("sparse", "full")
# q_rest = -expm1(lse_K - lse) loses its digits when the top K hold nearly all of the student's
# mass; below this the student's rest mass is taken to be this (it only matters where the
# teacher's rest mass is itself negligible).
_MIN_REST = 1e-6


@dataclass
class TeacherTopK:
    """What sparse KD needs from the teacher, per token; (B, T, K) and (B, T) tensors."""

    idx: Tensor  # (B, T, K) long: its K most likely tokens, the most likely first
    logp: Tensor  # (B, T, K) their log-probabilities at the KD temperature
    rest_logp: Tensor  # (B, T) log of the probability of every other token (-inf: none left)
    ce: Tensor  # (B, T) its cross-entropy against the input ids at temperature 1

    @property
    def argmax(self) -> Tensor:
        """(B, T) the teacher's most likely token."""
        return self.idx[..., 0]


def teacher_topk(logits: Tensor, k: int, tau: float, input_ids: Tensor) -> TeacherTopK:
    """The teacher's top K at temperature tau from its full (B, T, V) logits.

    Two passes over the vocabulary, in place: e = exp((z - max) / tau), then e^tau = exp(z - max)
    for the cross-entropy. Sums are taken in float64, and the rest bucket is the sum of e minus
    the very e values of the top K, so its mass is exact even where it is a tiny fraction."""
    z = logits.detach().float()
    top, idx = z.topk(k, dim=-1)  # sorted: the most likely first
    peak = top[..., :1]  # (B, T, 1): the largest logit
    e = (z - peak).div_(tau).exp_()  # (B, T, V) in (0, 1]
    total = e.sum(-1, dtype=torch.float64)  # (B, T)
    kept = e.gather(-1, idx).sum(-1, dtype=torch.float64)
    log_total = total.log()
    logp = ((top - peak) / tau).double() - log_total[..., None]
    rest_logp = (total - kept).clamp(min=0.0).log() - log_total  # -inf when K covers V
    total_at_1 = e.pow_(tau).sum(-1, dtype=torch.float64)  # sum exp(z - max)
    target = z.gather(-1, input_ids[..., None])[..., 0]
    ce = peak[..., 0].double() + total_at_1.log() - target.double()
    return TeacherTopK(idx, logp.float(), rest_logp.float(), ce.float())


def full_kl(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
    """(B, T) KL(p_teacher || q_student) at temperature tau over the whole vocabulary."""
    log_q = F.log_softmax(student_logits / tau, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach() / tau, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def sparse_kl(student_logits: Tensor, teacher: TeacherTopK, tau: float) -> Tensor:
    """(B, T) KL over the teacher's top K plus the rest bucket (module docstring).

    Costs one logsumexp over the student's vocabulary and a gather of K logits per token; the
    teacher's side is K + 1 numbers per token."""
    z = student_logits / tau
    lse = torch.logsumexp(z, dim=-1)  # (B, T)
    log_q = z.gather(-1, teacher.idx) - lse[..., None]  # (B, T, K)
    # log q_rest = log(1 - sum_K q) = log(-expm1(lse_K - lse)), lse_K <= lse.
    gap = (torch.logsumexp(log_q, dim=-1)).clamp(max=torch.log1p(torch.tensor(-_MIN_REST)).item())
    log_q_rest = torch.log(-torch.expm1(gap))
    p = teacher.logp.exp()
    kl = (p * (teacher.logp - log_q)).sum(-1)
    p_rest = teacher.rest_logp.exp()
    # xlogy semantics: a bucket the teacher gives no mass adds nothing (and no NaN gradient).
    rest = torch.where(p_rest > 0, p_rest * (teacher.rest_logp - log_q_rest), 0.0)
    return kl + rest
