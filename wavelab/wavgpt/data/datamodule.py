"""WavGPT's data: text tokenized with the frozen encoder's own tokenizer, in padded blocks.

Paragraphs (blank-line separated) are packed greedily into blocks of at most ``block_size``
tokens, ``[CLS] ... [SEP]`` included; a paragraph longer than a block is cut into full blocks.
Blocks thus end with some padding, as real inputs do, and no paragraph is cut where it fits.
Cached like the character corpora: per split an ``ids`` array (n_blocks × block_size) and a
``len`` array (real tokens per block), from which the attention mask follows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from wavelab.core.errors import ConfigError
from wavelab.data import cache
from wavelab.data.lm import fixed_starts
from wavelab.data.loading import ShardedDataModule
from wavelab.data.prepare import split_pieces
from wavelab.data.source import CorpusSource
from wavelab.data.token_file import TokenFile
from wavelab.data.tokenizers import WordPieceTokenizer
from wavelab.wavgpt.data.packing import frame_blocks, pack_paragraphs, pack_stream
from wavelab.wavgpt.model.encoder import load_config, load_tokenizer

__all__ = ["BlockDataset", "WordPieceDataModule", "frame_blocks", "pack_paragraphs"]

log = logging.getLogger(__name__)


# Teacher cache array -> batch key, and the dtype the model reads it in.
TEACHER_FIELDS = {
    "h": ("h", torch.float32),
    "idx": ("teacher_idx", torch.int64),
    "logp": ("teacher_logp", torch.float32),
    "rest": ("teacher_rest_logp", torch.float32),
    "ce": ("teacher_ce", torch.float32),
}


def fast_tokenize(tok) -> Callable[[list[str]], list[list[int]]]:
    """``tok(texts, add_special_tokens=False)["input_ids"]`` for a fast transformers tokenizer,
    through a copy of its ``tokenizers`` backend: the same ids without the wrapper's offsets and
    ``BatchEncoding``, which cost as much as the encoding itself."""
    return WordPieceTokenizer(Tokenizer.from_str(tok.backend_tokenizer.to_str())).encode_batch


class BlockDataset(Dataset):
    """Blocks as ``input_ids`` and ``attention_mask``, plus the teacher cache's arrays of the
    block (``teacher``: ``wavelab.wavgpt.data.teacher_cache.open_split``) under ``TEACHER_FIELDS``."""

    def __init__(
        self,
        ids: np.ndarray | TokenFile,
        lengths: np.ndarray | TokenFile,
        rows: np.ndarray | range | None = None,
        teacher: dict[str, TokenFile] | None = None,
    ):
        self.ids, self.lengths, self.teacher = ids, lengths, teacher or {}
        self.rows = range(len(ids)) if rows is None else rows  # a range: no array per block

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = int(self.rows[i])
        ids = torch.from_numpy(self.ids[r].astype(np.int64))
        mask = (torch.arange(len(ids)) < int(self.lengths[r])).long()
        item = {"input_ids": ids, "attention_mask": mask}
        for name, array in self.teacher.items():
            key, dtype = TEACHER_FIELDS[name]
            item[key] = torch.from_numpy(array[r]).to(dtype)
        return item


class WordPieceDataModule(ShardedDataModule):
    """A text corpus as padded word-piece blocks with attention masks, for WavGPT.

    ``tokenizer``: the encoder's name or path; ``source``: the corpus keys of ``CorpusSource``.
    ``teacher_cache``: also serve the frozen teacher's outputs per block (``h`` and the top-K
    teacher fields of ``TEACHER_FIELDS``) from ``wavelab.wavgpt.data.teacher_cache``, built on first use
    by the encoder ``teacher["encoder"]`` (FrozenEncoder kwargs) with ``teacher["top_k"]`` and
    ``teacher["temperature"]``.
    """

    def __init__(
        self,
        tokenizer: str,
        teacher_cache: bool | str = False,
        teacher: dict | None = None,
        teacher_cache_max_gb: float = 50.0,
        block_size: int = 256,
        batch_size: int = 8,
        val_fraction: float = 0.1,
        num_val_blocks: int = 64,
        num_workers: int = 0,
        cache_dir: str = "~/.cache/wavelab",
        **source,
    ):
        super().__init__()
        if isinstance(teacher, DictConfig):  # checkpoints hold plain data only (weights_only)
            teacher = OmegaConf.to_container(teacher, resolve=True)
        self.save_hyperparameters(logger=False)
        self.source = CorpusSource.from_keys(source, type(self).__name__)
        if block_size < 4:
            raise ConfigError(f"data.block_size={block_size} is invalid: must be >= 4")
        self.check_val_fraction(val_fraction)
        if teacher_cache not in (True, False, "auto"):
            raise ConfigError(
                f"data.teacher_cache={teacher_cache!r} is invalid: allowed are true, false, auto"
            )
        if teacher_cache and not teacher:
            raise ConfigError(
                f"data.teacher_cache={teacher_cache} needs data.teacher (encoder, top_k, "
                "temperature)"
            )
        if not float(teacher_cache_max_gb) > 0:
            raise ConfigError(
                f"data.teacher_cache_max_gb={teacher_cache_max_gb} is invalid: must be > 0"
            )
        self.tokenizer = None
        self.blocks: dict[str, tuple[TokenFile, TokenFile]] = {}  # (ids (N, T), lengths (N,))
        self.teacher_arrays: dict[str, dict[str, np.ndarray]] = {}
        self.teacher_meta: dict | None = None  # of the teacher cache entry, once set up

    def _entry(self):
        h = self.hparams
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(h.tokenizer)
            self._check_positions()
        tok = self.tokenizer
        vocab = sorted(tok.get_vocab().items())
        vocab_sha = hashlib.sha256(repr(vocab).encode()).hexdigest()[:12]

        def build(text, cut, out) -> dict:
            tokenize = fast_tokenize(tok)
            for split, pieces in split_pieces(text, cut):
                ids_out = out.array(f"{split}_ids", len(vocab))
                len_out = out.array(f"{split}_len", len(vocab))

                def emit(bodies, ids_out=ids_out, len_out=len_out) -> None:
                    ids, lengths = frame_blocks(
                        bodies, h.block_size, tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
                    )
                    ids_out.write(ids.ravel())
                    len_out.write(lengths)

                pack_stream(pieces, tokenize, h.block_size - 2, emit)
            return {"vocab_size": len(vocab), "block_size": h.block_size}

        key = f"wordpiece{vocab_sha}-T{h.block_size}-val{h.val_fraction}"
        need = {"train_len": (h.batch_size, "training blocks"), "val_len": (1, "validation blocks")}
        setting = f"data.block_size={h.block_size}, data.batch_size={h.batch_size}"
        return cache.load_or_build(
            h.cache_dir, self.source, key, h.val_fraction, build, need, setting
        )

    def _check_positions(self) -> None:
        """ConfigError unless the encoder has a position embedding for every token of a block."""
        h = self.hparams
        limit = getattr(load_config(h.tokenizer), "max_position_embeddings", None)
        if limit is not None and h.block_size > limit:
            raise ConfigError(
                f"data.block_size={h.block_size} is invalid: the encoder {h.tokenizer} reads at "
                f"most {limit} tokens (its max_position_embeddings); use data.block_size<={limit}"
            )

    def _teacher_entry(self, token_entry, blocks) -> tuple | None:
        """The teacher cache's (entry, meta), or None where ``teacher_cache=auto`` runs the
        teacher live: when training runs on an accelerator (where the frozen encoder costs
        little), or when the cache would exceed ``teacher_cache_max_gb`` or the free disk."""
        from wavelab.wavgpt.data import (
            teacher_cache,
        )  # the encoder: only when the cache is asked for
        from wavelab.wavgpt.model.encoder import FrozenEncoder

        h, spec = self.hparams, self.hparams.teacher
        if h.teacher_cache == "auto" and spec.get("kd") == "full":
            log.info("teacher_cache=auto: the teacher runs live (model.kd=full needs its logits)")
            return None
        if h.teacher_cache == "auto" and self.trainer is not None:
            device = self.trainer.strategy.root_device
            if device.type != "cpu":
                log.info("teacher_cache=auto: the teacher runs live (training runs on %s)", device)
                return None
        encoder = FrozenEncoder(**spec["encoder"])
        if h.teacher_cache == "auto":
            problem = teacher_cache.fit_problem(
                h.cache_dir, blocks, encoder, spec["top_k"], h.teacher_cache_max_gb
            )
            if problem:
                log.info("teacher_cache=auto: the teacher runs live (the cache: %s)", problem)
                return None
            log.info("teacher_cache=auto: caching the teacher (training runs on the CPU)")
        return teacher_cache.load_or_build(
            h.cache_dir,
            token_entry,
            blocks,
            encoder,
            spec["top_k"],
            spec["temperature"],
            h.teacher_cache_max_gb,
        )

    def prepare_data(self) -> None:
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        if self.blocks:
            return
        entry, meta = self._entry()
        T = self.hparams.block_size
        blocks = {}
        for split in ("train", "val"):
            ids = cache.open_tokens(entry, meta, f"{split}_ids", row=(T,))
            blocks[split] = (ids, cache.open_tokens(entry, meta, f"{split}_len"))
        if self.hparams.teacher_cache:
            from wavelab.wavgpt.data.teacher_cache import open_split

            found = self._teacher_entry(entry, blocks)
            if found is not None:
                teacher_entry, self.teacher_meta = found
                self.teacher_arrays = {
                    split: open_split(teacher_entry, self.teacher_meta, split) for split in blocks
                }
        self.blocks = blocks
        n_train, n_val = len(self.blocks["train"][0]), len(self.blocks["val"][0])
        lengths = self.blocks["train"][1]
        step = 1 << 20  # lengths read a piece at a time
        fill = sum(int(lengths[i : i + step].sum()) for i in range(0, len(lengths), step))
        fill /= max(1, len(lengths)) * T
        log.info(
            "corpus: %d train / %d val blocks of %d tokens (%.0f%% real)",
            n_train,
            n_val,
            T,
            100 * fill,
        )

    def model_kwargs(self) -> dict:
        return {}

    def train_dataloader(self) -> DataLoader:
        teacher = self.teacher_arrays.get("train")
        return self.train_loader(BlockDataset(*self.blocks["train"], teacher=teacher))

    def val_dataloader(self) -> DataLoader:
        ids, lengths = self.blocks["val"]
        rows = fixed_starts(len(ids) + 1, 1, self.hparams.num_val_blocks)  # evenly spaced rows
        rows = self.shardable(rows, "data.num_val_blocks")
        return self.loader(BlockDataset(ids, lengths, rows, self.teacher_arrays.get("val")))
