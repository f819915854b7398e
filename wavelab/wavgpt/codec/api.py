"""Text <-> WavGPT codes with a trained checkpoint: ``WavGPTCodec``.

The byte format and its bit accounting are ``wavelab.wavgpt.code.sparse_code``; ``python -m wavelab.wavgpt.codec``
(``wavelab/wavgpt/codec/__main__.py``) is the command line.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.code.sparse_code import SparseCode, code_bits, overhead_bytes, scale_count
from wavelab.wavgpt.metrics.distortion import mean_pool
from wavelab.wavgpt.model.coding import Code

if TYPE_CHECKING:  # never executed: no import edge to the Lightning module at run time
    from wavelab.wavgpt.codec.prior import PriorDecoder
    from wavelab.wavgpt.module import WavGPTModule


@dataclass(frozen=True)
class CodeSize:
    """What one code costs. ``bits_per_token`` is what ``to_bytes()`` sends; the ideal is
    ``code_bits`` (log2 C(T·d, k) positions), the figure training logs as bits per token."""

    num_bytes: int
    n_tokens: int
    bits_per_token: float
    ideal_bits_per_token: float
    compression_vs_ids: float  # bits of the raw token ids (log2 vocab each) / bits sent

    def __str__(self) -> str:
        return (
            f"{self.num_bytes} bytes for {self.n_tokens} tokens = {self.bits_per_token:.1f} bits/token "
            f"(ideal {self.ideal_bits_per_token:.1f}); {self.compression_vs_ids:.3g}x the raw ids"
        )


class WavGPTCodec:
    """Text <-> ``SparseCode`` with a trained ``WavGPTModule``; inference only, batched.

    One code is one block: ``[CLS] text [SEP]`` padded to ``block_size``, as in training. A text
    with more word pieces is truncated to the first ``block_size - 2`` of them, with a warning:
    splitting it would turn one text into several codes and make ``encode``/``decode`` no longer
    one-to-one, so split long documents before encoding instead.

    Codes are only decodable by the checkpoint that made them: ``decode`` checks the encoder
    fingerprint, the (block_size, d) shape and the compressor fingerprint (of the trained
    lifting, filter and refiner, hashed once when the codec is made: make a new codec after
    training the module further) and raises ValueError otherwise.
    """

    def __init__(
        self,
        module: WavGPTModule,
        tokenizer=None,
        batch_size: int = 16,
        prior: PriorDecoder | None = None,
    ) -> None:
        """Codes carry their values at the module's ``value_bits`` and ``value_scale``: what
        its refiner was trained to decode. ``batch_size``: texts per forward; decode runs at the
        real tokens only, so the cost per text hardly depends on it (``python -m wavelab.bench
        codec`` measures it), and it bounds the (B, T, V) logits chunk of decoding. ``prior``:
        decode each block by beam search under a language model (``wavgpt.prior``) instead of
        the head's argmax per position; the code is the same either way."""
        # transformers: imported only once a model is at hand, so `--help` stays fast
        from wavelab.wavgpt.model.encoder import load_tokenizer, weights_fingerprint

        if not module.core.has_bands:
            raise ConfigError(
                f"model.coder={module.cfg.coder!r}: the codec writes wavelet codes only; a "
                "baseline coder (pca, scalar) is measured in training, not sent"
            )
        self.module = module.eval()
        self.tokenizer = tokenizer or load_tokenizer(module.hparams.encoder["name_or_path"])
        self.batch_size = batch_size
        self.block_size = module.cfg.block_size
        self.d = module.encoder.d
        self.encoder_fingerprint = bytes.fromhex(module.encoder.fingerprint)
        self.compressor = bytes.fromhex(weights_fingerprint(module.core))
        self.prior = prior

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str | torch.device = "cpu", **kwargs
    ) -> WavGPTCodec:
        """Loads a WavGPT checkpoint; its encoder is re-loaded from the recorded
        ``name_or_path`` and must match the recorded fingerprint. Raises ConfigError (naming
        ``ckpt_path``) for anything but a readable WavGPT checkpoint."""
        from wavelab.core.checkpoints import load_module
        from wavelab.wavgpt.module import WavGPTModule

        module = load_module(str(path), map_location=map_location)
        if not isinstance(module, WavGPTModule):
            raise ConfigError(
                f"ckpt_path={str(path)!r} is invalid: it holds a {type(module).__name__} (a "
                "language model; use python -m wavelab.sample), not a WavGPT checkpoint"
            )
        return cls(module, **kwargs)

    # --- encoding -----------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Texts -> ``[CLS] ... [SEP] [PAD]...`` input_ids and attention_mask, (B, block_size)."""
        from wavelab.wavgpt.data.datamodule import frame_blocks  # Lightning: only once texts come

        tok, room = self.tokenizer, self.block_size - 2
        texts = list(texts)
        pieces = tok(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
        for i, body in enumerate(pieces):
            if len(body) > room:
                warnings.warn(
                    f"text {i} has {len(body)} word pieces; a code holds {room}: the rest "
                    "is dropped (split long texts before encoding)",
                    stacklevel=3,
                )
        ids, lengths = frame_blocks(
            [body[:room] for body in pieces],
            self.block_size,
            tok.cls_token_id,
            tok.sep_token_id,
            tok.pad_token_id,
        )
        mask = torch.arange(self.block_size)[None, :] < torch.from_numpy(lengths)[:, None]
        return torch.from_numpy(ids), mask.long()

    def encode(self, texts: Sequence[str]) -> list[SparseCode]:
        return self.encode_ids(*self.tokenize(texts))

    @torch.inference_mode()
    def encode_ids(self, input_ids: Tensor, attention_mask: Tensor) -> list[SparseCode]:
        """(B, T) ids and mask -> B codes of the coefficients the filter keeps, at value_bits."""
        codes = []
        for ids, mask in self._batches(input_ids, attention_mask):
            codes += self.encode_hidden(self.module.encoder.hidden(ids, mask), mask)
        return codes

    @torch.inference_mode()
    def encode_hidden(self, h: Tensor, attention_mask: Tensor) -> list[SparseCode]:
        """The frozen encoder's (B, T, d) hidden states and (B, T) mask -> B codes. Runs the
        core's encoder half only (``WavGPTCore.code``): the refiner is decode's."""
        core, cfg = self.module.core, self.module.cfg
        code = core.code(h, attention_mask)
        return SparseCode.from_batch(
            code.values,
            code.keep,
            attention_mask.sum(1),
            code.scales,
            encoder_fingerprint=self.encoder_fingerprint,
            value_bits=cfg.value_bits,
            compressor=self.compressor,
            value_scale=cfg.value_scale,
            levels=core.levels,
        )

    # --- decoding -----------------------------------------------------------------------------

    def check(self, code: SparseCode) -> None:
        """Raises ValueError unless this checkpoint can decode ``code``."""
        if code.encoder_fingerprint != self.encoder_fingerprint:
            raise ValueError(
                f"this code was made with encoder fingerprint {code.encoder_fingerprint_hex or '(none)'}, "
                f"but this checkpoint's encoder has {self.encoder_fingerprint.hex()}: decode it with the "
                "checkpoint that encoded it"
            )
        if (code.block_size, code.d) != (self.block_size, self.d):
            raise ValueError(
                f"code shape (block_size={code.block_size}, d={code.d}) does not match the "
                f"checkpoint's (block_size={self.block_size}, d={self.d})"
            )
        if code.compressor != self.compressor:
            raise ValueError(
                f"this code was made with compressor fingerprint {code.compressor.hex()}, but "
                f"this checkpoint's compressor has {self.compressor.hex()}: it comes from another "
                "checkpoint (same encoder, other trained weights); decode it with the checkpoint "
                "that encoded it"
            )
        if code.n_tokens < 1:
            raise ValueError("code has n_tokens=0: every code holds at least one token")

    @torch.inference_mode()
    def hidden(
        self, codes: Sequence[SparseCode | bytes], refined: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Codes (or their bytes) -> hidden states (B, T, d) and attention_mask (B, T): refined,
        what the frozen head reads, or (``refined=False``) the inverse transform alone."""
        codes = [c if isinstance(c, SparseCode) else SparseCode.from_bytes(c) for c in codes]
        for code in codes:
            self.check(code)
        device = self.module.device
        n_tokens = torch.tensor([c.n_tokens for c in codes], device=device)
        mask = (torch.arange(self.block_size, device=device)[None, :] < n_tokens[:, None]).long()
        core, out = self.module.core, []
        for start in range(0, len(codes), self.batch_size):
            chunk = codes[start : start + self.batch_size]
            values = torch.from_numpy(SparseCode.batch_to_dense(chunk)).to(device, self._dtype())
            chunk_mask = mask[start : start + len(chunk)].bool()
            unrefined = core.decode(Code(values, chunk_mask))  # (b, T, d)
            if not refined:
                out.append(unrefined)
                continue
            # The refiner's padded steps are masked out of attention and thrown away: refine
            # only up to the chunk's longest code, and pad back with zeros.
            n = max(c.n_tokens for c in chunk)
            refined = core.refine(unrefined[:, :n], chunk_mask[:, :n])
            out.append(torch.nn.functional.pad(refined, (0, 0, 0, self.block_size - n)))
        return torch.cat(out), mask

    def decode(self, codes: Sequence[SparseCode | bytes]) -> list[str]:
        h, mask = self.hidden(codes)
        return self._head_texts(h, mask)

    @torch.inference_mode()
    def head_decode(self, input_ids: Tensor, attention_mask: Tensor) -> list[str]:
        """What the frozen head reads back from the untouched hidden states: the upper bound
        for ``decode`` (not 100% for a tied head such as MiniLM's)."""
        hs = [self.module.encoder.hidden(i, m) for i, m in self._batches(input_ids, attention_mask)]
        return self._head_texts(torch.cat(hs), attention_mask.to(self.module.device))

    def ids_to_texts(self, input_ids: Tensor, attention_mask: Tensor) -> list[str]:
        rows = [ids[: int(n)].tolist() for ids, n in zip(input_ids, attention_mask.sum(1))]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    def _head_texts(self, h: Tensor, mask: Tensor) -> list[str]:
        """The head's argmax at the real tokens only (padding is never read): (B, T) ids."""
        if self.prior is not None:
            return self._prior_texts(h, mask)
        real = mask.bool()
        states = h[real]  # (N, d), N real tokens in all
        # Chunked: the logits (rows, vocab) are the largest tensor of the pipeline.
        rows = self.batch_size * self.block_size
        best = torch.cat(
            [self.module.encoder.argmax(states[i : i + rows]) for i in range(0, len(states), rows)]
        )
        ids = torch.zeros(real.shape, dtype=torch.long, device=h.device)
        ids[real] = best
        return self.ids_to_texts(ids.cpu(), mask.cpu())

    def _prior_texts(self, h: Tensor, mask: Tensor) -> list[str]:
        """Each block decoded by the prior's beam search over the head's log-probabilities."""
        ids = torch.zeros(mask.shape, dtype=torch.long)
        for b, n in enumerate(mask.sum(1).tolist()):
            head_logp = torch.log_softmax(self.module.encoder.logits(h[b, :n]).float(), dim=-1)
            ids[b, :n] = torch.tensor(self.prior.decode(head_logp))
        return self.ids_to_texts(ids, mask.cpu())

    # --- similarity and size ------------------------------------------------------------------

    def embed(self, items: Sequence[str | SparseCode | bytes], refined: bool = False) -> Tensor:
        """(n, d) unit vectors: decoded hidden states mean-pooled over real tokens, i.e. the
        sentence embedding all-MiniLM-L6-v2 is trained for, read from the code. Texts are
        encoded first, so they are compared by what their codes carry.

        The states are the inverse transform's, before the refiner: KD and CE train the refiner
        for the head's tokens only, and its states can lose the embedding
        (experiments/wavgpt_reviewer.md measures both). ``refined=True`` reads the refined
        states, e.g. of a model trained with ``model.embedding_weight`` > 0."""
        texts = [i for i, item in enumerate(items) if isinstance(item, str)]
        codes = list(items)
        for i, code in zip(texts, self.encode([items[i] for i in texts])):
            codes[i] = code
        h, mask = self.hidden(codes, refined)
        return torch.nn.functional.normalize(mean_pool(h, mask).float(), dim=-1)

    def similarity(
        self,
        a: Sequence[str | SparseCode | bytes],
        b: Sequence[str | SparseCode | bytes],
        refined: bool = False,
    ) -> Tensor:
        """(len(a), len(b)) cosine similarities of ``embed``; the diagonal of
        ``similarity(x, y)`` holds the pairwise ones.

        How far these similarities can be trusted is what ``python -m wavelab.wavgpt.study.retrieval``
        measures for a checkpoint on every held-out block of its run: recall@1 and recall@10
        (does each code find its own text's embedding among all of them?) and the Spearman
        correlation of pairwise cosines with the uncompressed embeddings (does the order of
        similarities survive, as an STS-style use needs?), before the refiner and after it,
        beside the two-part code (the embedding quantized, plus the text compressed) at the
        same blocks; experiments/wavgpt_reviewer.md reports them per method and rate."""
        return self.embed(a, refined) @ self.embed(b, refined).T

    def size(self, code: SparseCode) -> CodeSize:
        bits = code.bits()
        n = max(code.n_tokens, 1)
        header = 8 * overhead_bytes(len(code.encoder_fingerprint))
        n_scales = scale_count(code.value_bits, code.value_scale, code.levels)
        ideal = code_bits(code.k, code.block_size, code.d, code.value_bits, header, n_scales)
        ids_bits = n * math.log2(self.module.encoder.vocab_size)
        return CodeSize(bits // 8, code.n_tokens, bits / n, ideal / n, ids_bits / bits)

    def _batches(self, input_ids: Tensor, attention_mask: Tensor):
        device = self.module.device
        for start in range(0, len(input_ids), self.batch_size):
            end = start + self.batch_size
            yield input_ids[start:end].to(device), attention_mask[start:end].to(device)

    def _dtype(self) -> torch.dtype:
        return self.module.encoder.model.get_input_embeddings().weight.dtype
