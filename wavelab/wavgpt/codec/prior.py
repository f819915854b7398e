"""Decoding a WavGPT code with a language-model prior: beam search over the head's candidates.

Without a prior a code decodes one position at a time: the frozen head's argmax on each refined
state. With a prior (noisy channel), a block's token sequence y is chosen to maximize

    Σ_t log p_head(y_t | state_t) + λ · Σ_t log p_prior(y_t | y_<t)

by beam search of width ``beam`` over each position's ``candidates`` most likely head tokens.
The prior is a wavelab language model trained on the encoder's own WordPiece tokens (data
``tokenizer: wordpiece``), so it reads exactly the ids a code decodes to.

A block is ``[CLS] body [SEP]``: those two positions are the head's argmax (a code never moves
them), and the prior scores the body only. Its first token has no context to condition on and
is scored by the head alone; each later one is conditioned on the body before it, cropped to
the prior's ``context_size``. λ = 0 is the decoder without a prior.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.config import PriorSettings


def check_prior(lm: L.LightningModule, encoder_vocab: dict[str, int], where: str) -> None:
    """ConfigError (naming ``where``) unless ``lm`` is a language model on exactly the
    encoder's WordPiece vocabulary."""
    from wavelab.core.registry import spec_of

    spec = spec_of(lm)
    if spec is None or not spec.generates_text:
        label = spec.label if spec else type(lm).__name__
        raise ConfigError(f"{where} is invalid: it holds a {label}, not a language model")
    tokenizer = getattr(lm, "tokenizer", None)
    kind = getattr(tokenizer, "kind", None)
    if kind != "wordpiece":
        raise ConfigError(
            f"{where} is invalid: its language model reads {kind} tokens; a prior must be "
            "trained on the encoder's WordPiece (data=shakespeare_wordpiece_lm)"
        )
    if tokenizer.vocab() != encoder_vocab:
        raise ConfigError(
            f"{where} is invalid: its WordPiece vocabulary ({tokenizer.vocab_size} tokens) is "
            f"not the encoder's ({len(encoder_vocab)} tokens): train it with data.wordpiece_from "
            "set to the WavGPT model's encoder"
        )


class PriorDecoder:
    """Beam-search decoding of blocks under a language-model prior (see the module docstring)."""

    def __init__(self, lm: L.LightningModule, settings: PriorSettings) -> None:
        self.lm = lm.eval()
        self.settings = settings
        self.context = int(lm.context_size)

    @torch.inference_mode()
    def decode(self, head_logp: Tensor) -> list[int]:
        """(n, V) the head's log-probabilities at a block's n real positions ([CLS] first,
        [SEP] last) -> the block's n token ids."""
        best = head_logp.argmax(-1)
        n, s = len(best), self.settings
        if s.weight == 0 or n <= 3:  # no prior, or a body of one token: the head alone decides
            return best.tolist()
        body = head_logp[1 : n - 1]  # (m, V)
        cand_logp, cand_ids = body.topk(min(s.candidates, body.shape[-1]), dim=-1)  # (m, c)
        device = head_logp.device
        # beams: (W, t) token ids of the body so far, scores (W,)
        beams = cand_ids[0, : s.beam, None]
        scores = cand_logp[0, : s.beam].clone()
        for t in range(1, len(body)):
            context = beams[:, -self.context :]  # (W, ≤ context)
            prior = torch.log_softmax(
                self.lm.next_token_logits(context.to(self.lm.device)).float(), -1
            )
            prior = prior.to(device)[:, cand_ids[t]]  # (W, c)
            total = scores[:, None] + cand_logp[t][None, :] + s.weight * prior  # (W, c)
            scores, flat = total.flatten().topk(min(s.beam, total.numel()))
            rows, cols = flat // total.shape[1], flat % total.shape[1]
            beams = torch.cat([beams[rows], cand_ids[t][cols][:, None]], dim=1)
        return [int(best[0]), *beams[0].tolist(), int(best[-1])]

    def score(self, head_logp: Tensor, ids: list[int]) -> float:
        """The objective ``decode`` maximizes, of a block's ids: for tests and checks."""
        n, s = len(ids), self.settings
        total = float(sum(head_logp[t, i] for t, i in enumerate(ids)))
        body = ids[1 : n - 1]
        with torch.inference_mode():
            for t in range(1, len(body)):
                context = torch.tensor([body[max(0, t - self.context) : t]], device=self.lm.device)
                prior = torch.log_softmax(self.lm.next_token_logits(context)[0].float(), -1)
                total += s.weight * float(prior[body[t]])
        return total
