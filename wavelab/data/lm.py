"""Language-modelling data: a corpus, a tokenizer, cached token streams and fixed-length windows.

Each sample is ``(x_prev, x, y)``: the window ``x`` of ``block_size`` tokens, the targets ``y``
(``x`` shifted by one), and the ``block_size`` tokens before the window, ``x_prev``, that WaveGPT's
``prev_block`` branch reads. Where the window starts less than one block into its split, the
missing part of ``x_prev`` is ``-1`` ("before the stream"): each split is its own stream, so no
validation window peeks into training text and vice versa.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from wavelab.core.errors import ConfigError
from wavelab.data import cache
from wavelab.data.loading import ShardedDataModule
from wavelab.data.prepare import build_lm
from wavelab.data.source import CorpusSource
from wavelab.data.token_file import TokenFile
from wavelab.data.tokenizers import (
    HF_PREFIX,
    HFTokenizer,
    JSONTokenizer,
    TextTokenizer,
    WordPieceTokenizer,
    tokenizer_from_dict,
)

log = logging.getLogger(__name__)


class WindowDataset(Dataset):
    """Windows of a token stream, starting at ``starts`` (all valid offsets by default)."""

    def __init__(
        self,
        tokens: np.ndarray | TokenFile,
        block_size: int,
        starts: np.ndarray | range | None = None,
    ):
        if len(tokens) < block_size + 1:
            raise ConfigError(
                f"data.block_size={block_size} is too large for a split of {len(tokens)} tokens"
            )
        self.tokens = tokens
        self.block_size = block_size
        self.starts = starts

    def __len__(self) -> int:
        if self.starts is not None:
            return len(self.starts)
        return len(self.tokens) - self.block_size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        T = self.block_size
        s = int(self.starts[i]) if self.starts is not None else i
        chunk = torch.from_numpy(self.tokens[s : s + T + 1].astype(np.int64))
        prev = torch.from_numpy(self.tokens[max(0, s - T) : s].astype(np.int64))
        x_prev = torch.cat([torch.full((T - len(prev),), -1, dtype=torch.int64), prev])
        return x_prev, chunk[:-1], chunk[1:]


def fixed_starts(n_tokens: int, block_size: int, n_windows: int | None) -> np.ndarray | range:
    """Deterministic window starts: ``n_windows`` evenly spaced over the split, or, for None,
    back-to-back windows that score every token of the split once (up to a tail shorter than
    a window): the exact split loss rather than an estimate of it. Those are a ``range``, which
    holds no array the size of the split."""
    last = n_tokens - block_size - 1
    if n_windows is None:
        return range(0, last + 1, block_size)
    n = min(n_windows, last + 1)
    return np.unique(np.linspace(0, last, n).round().astype(np.int64))


class LMDataModule(ShardedDataModule):
    """A text corpus as (x_prev, x, y) windows: random ones for training, fixed ones for val.

    ``source``: the corpus keys of ``CorpusSource`` (``path``, ``hf_name``, ``corpus``, ...).
    """

    def __init__(
        self,
        tokenizer: str = "char",
        bpe_vocab_size: int = 4096,
        wordpiece_from: str | None = None,
        block_size: int = 64,
        batch_size: int = 12,
        val_fraction: float = 0.1,
        num_val_windows: int | None = 512,
        num_workers: int = 0,
        cache_dir: str = "~/.cache/wavelab",
        **source,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.source = CorpusSource.from_keys(source, type(self).__name__)
        self.check_val_fraction(val_fraction)
        for key in ("block_size", "batch_size"):
            if int(getattr(self.hparams, key)) < 1:
                raise ConfigError(
                    f"data.{key}={getattr(self.hparams, key)} is invalid: must be >= 1"
                )
        if num_val_windows is not None and int(num_val_windows) < 1:
            raise ConfigError(
                f"data.num_val_windows={num_val_windows} is invalid: must be >= 1, or null for "
                "the whole validation split"
            )
        # A tokenizer that is loaded, not trained: wordpiece's, or an hf: model dir's.
        self.given: JSONTokenizer | None = None
        if str(tokenizer).startswith(HF_PREFIX):
            self.given = HFTokenizer.from_spec(str(tokenizer))
        elif tokenizer == "wordpiece":
            if not wordpiece_from:
                raise ConfigError(
                    "data.tokenizer=wordpiece needs data.wordpiece_from: an encoder's model "
                    "directory or packaged:all-MiniLM-L6-v2"
                )
            self.given = WordPieceTokenizer.from_model_dir(str(wordpiece_from))
        self.tokenizer: TextTokenizer | None = None
        self.splits: dict[str, TokenFile] = {}

    @property
    def _tokenizer_key(self) -> str:
        h = self.hparams
        kind = h.tokenizer
        if kind == "bpe":
            kind = f"bpe{h.bpe_vocab_size}"
        elif self.given is not None:  # keyed by the tokenizer itself, not by where it is
            kind = self.given.kind + self.given.fingerprint()[:12]
        return f"{kind}-val{h.val_fraction}"

    def _entry(self) -> tuple[Path, dict]:
        """Finds or builds the cache entry for this corpus and tokenizer."""
        h = self.hparams

        def build(text, cut, out) -> dict:
            kind = h.tokenizer if self.given is None else self.given.kind
            return build_lm(text, cut, out, kind, h.bpe_vocab_size, self.given)

        need = {  # one batch of windows (and their targets) to train on, one window to validate
            "train": (h.block_size + h.batch_size, "training tokens"),
            "val": (h.block_size + 1, "validation tokens"),
        }
        setting = f"data.block_size={h.block_size}, data.batch_size={h.batch_size}"
        key = self._tokenizer_key
        return cache.load_or_build(
            h.cache_dir, self.source, key, h.val_fraction, build, need, setting
        )

    def prepare_data(self) -> None:
        self._entry()

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        entry, meta = self._entry()
        self.tokenizer = tokenizer_from_dict(meta["tokenizer"])
        self.splits = {s: cache.open_tokens(entry, meta, s) for s in ("train", "val")}
        log.info(
            "corpus: %s train / %s val tokens, vocab %d (%s)",
            f"{len(self.splits['train']):,}",
            f"{len(self.splits['val']):,}",
            self.tokenizer.vocab_size,
            self.tokenizer.kind,
        )

    @property
    def vocab_size(self) -> int:
        assert self.tokenizer is not None, "call setup() first"
        return self.tokenizer.vocab_size

    def model_kwargs(self) -> dict:
        """What the model must know about the data: the tokenizer it writes and reads."""
        assert self.tokenizer is not None, "call setup() first"
        return {"tokenizer": self.tokenizer.to_dict()}

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(WindowDataset(self.splits["train"], self.hparams.block_size))

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        starts = fixed_starts(len(self.splits["val"]), h.block_size, h.num_val_windows)
        starts = self.shardable(starts, "data.num_val_windows")
        return self.loader(WindowDataset(self.splits["val"], h.block_size, starts))
