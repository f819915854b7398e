"""WavGPT's training loss: distillation from the frozen head, plus optional MSE terms."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from wavelab.wavgpt.config import WavGPTConfig
from wavelab.wavgpt.metrics.distortion import pooled_cosine
from wavelab.wavgpt.model.distill import TeacherTopK, full_kl, sparse_kd_and_ce


def masked_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    """Mean of a (B, T) tensor over real tokens only."""
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def distillation_loss(
    student_logits: Tensor,
    teacher: Tensor | TeacherTopK,
    input_ids: Tensor,
    attention_mask: Tensor,
    cfg: WavGPTConfig,
    refined: Tensor | None = None,
    target_h: Tensor | None = None,
    unrefined: Tensor | None = None,
    per_token: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the WavGPT losses; every term is a mean over real tokens.

    kl:         tau^2 * KL(p_teacher || p_student), p = softmax(logits / tau) (the usual Hinton
                distillation term: the student is pushed to cover the teacher's distribution;
                tau^2 keeps its gradient scale independent of tau). Over the whole vocabulary
                when ``teacher`` is its (B, T, V) logits, over its top K plus a rest bucket when
                it is a ``TeacherTopK`` (sparse KD, ``wavelab.wavgpt.model.distill``).
    ce:         cross-entropy of the student's logits (tau = 1) against the input ids, i.e. the
                reconstruction of the text itself.
    hidden_mse: mean over d of (refined - target_h)^2.
    embedding:  1 - cosine of the mean-pooled refined and target_h (the block's sentence
                embedding, ``distortion.pooled_cosine``), a mean over blocks. KD and CE train
                the refined states for the head's logits only, and they drift from the original
                embedding (experiments/wavgpt_rate_distortion.md); this term anchors the
                block's embedding alone, where hidden_mse pulls every state back to h.
    unrefined_mse: mean over d of (unrefined - target_h)^2, the states decoded from the code before
                the refiner.
    logits_mse: mean over V of (student_logits - teacher_logits)^2 (full logits only).

    Terms with weight 0 are skipped, except kl and ce, which are always returned for logging.
    ``per_token``: the (B, T) kl and ce computed already (``tied_sparse_kd_and_ce``, which
    never holds the logits); ``student_logits`` is then None, and logits_mse unavailable.
    Returns (total, {name: term}) with unweighted terms.
    """
    tau = cfg.kd_temperature
    sparse = isinstance(teacher, TeacherTopK)
    if per_token is not None:
        kl, ce = per_token
    elif sparse:  # both terms in one fused pass over the vocabulary
        kl, ce = sparse_kd_and_ce(student_logits, teacher, tau, input_ids)  # (B, T) each
    else:
        kl = full_kl(student_logits, teacher, tau)
        ce = F.cross_entropy(student_logits.transpose(1, 2), input_ids, reduction="none")
    terms = {
        "kl": masked_mean(kl, attention_mask) * tau**2,
        "ce": masked_mean(ce, attention_mask),
    }
    mse_inputs = {
        "hidden_mse": (refined, target_h),
        "unrefined_mse": (unrefined, target_h),
        "logits_mse": (student_logits, None if sparse else teacher),
    }
    weights = cfg.loss_weights()
    needs_h = "refined and target_h"
    for name, (pred, target) in mse_inputs.items():
        if weights[name] == 0:
            continue
        if pred is None or target is None:
            needs = {
                "hidden_mse": needs_h,
                "unrefined_mse": "unrefined and target_h",
                "logits_mse": "the teacher's full logits (model.kd=full)",
            }
            raise ValueError(f"model.{name}_weight={weights[name]} needs {needs[name]}")
        terms[name] = masked_mean((pred - target.detach()).pow(2).mean(-1), attention_mask)
    if weights["embedding"] > 0:
        if refined is None or target_h is None:
            raise ValueError(f"model.embedding_weight={weights['embedding']} needs {needs_h}")
        terms["embedding"] = 1 - pooled_cosine(refined, target_h.detach(), attention_mask).mean()
    total = sum(weights[name] * value for name, value in terms.items())
    return total, terms


def token_accuracy(predicted: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Fraction of real tokens whose predicted id (B, T) is the input token."""
    return masked_mean((predicted == input_ids).float(), attention_mask)
