"""Exact text from a code: a block's ids range-coded under the prior, the head, or both.

A block is ``[CLS] body [SEP]``, n real tokens. ``n`` travels in the block's record and the two
frame tokens are implied by it, so they cost nothing beyond it; padding is never sent. The body's
m = n - 2 ids are range-coded (``wavelab.wavgpt.code.range_coding``) under, at position t:

* ``prior``: p_prior(y_t | y_<t), a wavelab language model on the encoder's WordPiece; its first
  token has no context and is coded uniformly, log2 V bits;
* ``head``: p_head(y_t | state_t), the frozen head on the refined states decoded from the code;
* ``product``: the normalized p_head^α · p_prior^β (α, β fitted on training blocks, stored).

Exact by construction, provided the decoder computes the encoder's tables bit for bit. Both
therefore run the same operations in the same shapes: the code's states decoded alone (a batch
of one, refined over its n tokens), the prior one token at a time through its KV cache
(the language model's ``incremental_decoder``, the decoder's only possible order), every table row by row.
The per-block CRC32 of the ids catches whatever still differs (another build, another model, a
damaged payload) and decoding then fails in one line rather than return a wrong text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from wavelab.wavgpt.code import range_coding
from wavelab.wavgpt.code.exact_format import (
    FINGERPRINT_BYTES,
    MODES,
    ExactBlock,
    ExactFile,
    ids_crc,
)


@dataclass(frozen=True)
class Frame:
    """The ids every block starts and ends with."""

    cls_id: int
    sep_id: int


class ExactCoder:
    """Blocks' ids <-> ``ExactBlock`` records; see the module docstring.

    ``prior``: a language model (``incremental_decoder``, ``net``) on the encoder's WordPiece,
    needed by ``prior`` and ``product``; ``codec``: a ``WavGPTCodec`` whose codes the head reads,
    needed by ``head`` and ``product``."""

    def __init__(
        self,
        mode: str,
        frame: Frame,
        vocab_size: int,
        prior=None,
        codec=None,
        alpha: float = 1.0,
        beta: float = 1.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is invalid: one of {', '.join(MODES)}")
        if mode in ("prior", "product") and prior is None:
            raise ValueError(f"mode={mode!r} needs a prior language model")
        if mode in ("head", "product") and codec is None:
            raise ValueError(f"mode={mode!r} needs a WavGPT checkpoint whose head reads the code")
        self.mode, self.frame, self.vocab_size = mode, frame, vocab_size
        self.prior = None if prior is None else prior.eval()
        self.codec = codec
        # as the file stores them: the encoder must use what the decoder will read
        self.alpha = float(np.float32(alpha))
        self.beta = float(np.float32(beta))
        self.prior_fingerprint = bytes(FINGERPRINT_BYTES)
        if self.prior is not None:
            from wavelab.wavgpt.model.encoder import weights_fingerprint

            self.prior_fingerprint = bytes.fromhex(weights_fingerprint(self.prior.net))

    # --- the tables -------------------------------------------------------------------------

    @torch.inference_mode()
    def head_logp(self, code: bytes, n_tokens: int) -> Tensor | None:
        """(m, V) the head's log-probabilities at the body's positions, from the code alone."""
        if self.mode == "prior":
            return None
        h, _ = self.codec.hidden([code])  # a batch of one, as at the other end
        logits = self.codec.module.encoder.logits(h[0, 1 : n_tokens - 1]).float()
        return torch.log_softmax(logits, dim=-1)

    def _row(self, t: int, head: Tensor | None, prior_logits: Tensor | None) -> np.ndarray:
        """(V,) the float64 table of body position t."""
        if self.mode == "head":
            return range_coding.tables(head[t : t + 1])[0]
        if prior_logits is None:  # the body's first token: no context
            prior_logp = torch.full((1, self.vocab_size), 0.0)
        else:
            prior_logp = torch.log_softmax(prior_logits.float(), dim=-1)
        if self.mode == "prior":
            return range_coding.tables(prior_logp)[0]
        mixed = self.alpha * head[t : t + 1] + self.beta * prior_logp
        return range_coding.tables(torch.log_softmax(mixed, dim=-1))[0]

    def _prior_step(self, decoder, body: list[int]) -> Tensor | None:
        if self.prior is None or not body:
            return None
        ids = torch.tensor([body], device=self.prior.device)
        return decoder.next_logits(ids).cpu()

    def _decoder(self):
        return None if self.prior is None else self.prior.incremental_decoder(1)

    @torch.inference_mode()
    def prior_logits(self, body: Sequence[int]) -> list[Tensor | None]:
        """The prior's (1, V) logits at each body position (None at the first, and without a
        prior), computed as decoding computes them; coders of one prior may share them."""
        decoder = self._decoder()
        return [self._prior_step(decoder, list(body[:t])) for t in range(len(body))]

    @torch.inference_mode()
    def block_tables(
        self, ids: Sequence[int], code: bytes, prior_logits: list[Tensor | None] | None = None
    ) -> np.ndarray:
        """(m, V) the tables the body of ``ids`` is coded under, as decoding computes them;
        ``prior_logits``: this block's ``prior_logits``, if already computed."""
        body = list(ids[1:-1])
        head = self.head_logp(code, len(ids))
        if prior_logits is None:
            prior_logits = self.prior_logits(body)
        rows = [self._row(t, head, prior_logits[t]) for t in range(len(body))]
        return np.stack(rows) if rows else np.zeros((0, self.vocab_size))

    # --- blocks -----------------------------------------------------------------------------

    def encode_block(self, ids: Sequence[int], code: bytes = b"") -> ExactBlock:
        """A block's n ids (``[CLS] ... [SEP]``) and its code -> its record."""
        return self.measured_block(ids, code)[0]

    def measured_block(
        self, ids: Sequence[int], code: bytes = b"", prior_logits: list | None = None
    ) -> tuple[ExactBlock, float]:
        """``encode_block``'s record and the ideal -Σ log2 p of the body, in bits."""
        ids = [int(i) for i in ids]
        if len(ids) < 2 or ids[0] != self.frame.cls_id or ids[-1] != self.frame.sep_id:
            raise ValueError("a block's ids must start with [CLS] and end with [SEP]")
        body = np.array(ids[1:-1])
        probabilities = self.block_tables(ids, code, prior_logits)
        block = ExactBlock(
            len(ids), bytes(code), range_coding.encode(body, probabilities), ids_crc(ids)
        )
        return block, range_coding.ideal_bits(body, probabilities)

    @torch.inference_mode()
    def decode_block(self, block: ExactBlock) -> list[int]:
        """The block's ids; ValueError if they fail the block's CRC32."""
        if block.n_tokens < 2:
            raise ValueError(f"corrupt exact code: a block of {block.n_tokens} tokens")
        m = block.n_tokens - 2
        head = self.head_logp(block.code, block.n_tokens)
        if self.mode == "head":
            body = range_coding.decode_all(block.payload, range_coding.tables(head)).tolist()
        else:
            decoder, body = self._decoder(), []
            stream = range_coding.Decoder(block.payload)
            for t in range(m):
                row = self._row(t, head, self._prior_step(decoder, body))
                body.append(stream.next(row))
        ids = [self.frame.cls_id, *body, self.frame.sep_id]
        if ids_crc(ids) != block.crc:
            raise ValueError(
                "the decoded ids fail their CRC32: the payload was coded under another prior, "
                "checkpoint or torch build, or it is damaged"
            )
        return ids

    # --- files ------------------------------------------------------------------------------

    def encode_file(self, blocks: Sequence[tuple[Sequence[int], bytes]]) -> ExactFile:
        records = tuple(self.encode_block(ids, code) for ids, code in blocks)
        return ExactFile(self.mode, self.alpha, self.beta, self.prior_fingerprint, records)

    def check_file(self, file: ExactFile) -> None:
        """ValueError unless this coder decodes ``file``: its mode, exponents and prior."""
        if file.mode != self.mode:
            raise ValueError(f"the file was coded in mode {file.mode!r}, not {self.mode!r}")
        if file.prior_fingerprint != self.prior_fingerprint:
            raise ValueError(
                f"the file was coded under prior fingerprint {file.prior_fingerprint.hex()}, "
                f"but this prior has {self.prior_fingerprint.hex()}: decode it with that prior"
            )

    def for_file(self, file: ExactFile) -> ExactCoder:
        """This coder with the file's exponents (as stored); ValueError if it can't read it."""
        self.check_file(file)
        if (file.alpha, file.beta) == (self.alpha, self.beta):
            return self
        return ExactCoder(
            self.mode, self.frame, self.vocab_size, self.prior, self.codec, file.alpha, file.beta
        )

    def decode_file(self, file: ExactFile) -> list[list[int]]:
        coder = self.for_file(file)
        return [coder.decode_block(block) for block in file.blocks]
