"""The frozen teacher's outputs, computed once per block and cached: WavGPT trains without its
encoder.

WavGPT's encoder and LM head are frozen, so for a given block their outputs never change. This
cache stores, per block of a split, everything training needs from them:

    h      (N, T, d)  the encoder's hidden states of ``layer`` (fp16; fp32 if fp16 overflows)
    idx    (N, T, K)  the head's K most likely tokens at each position, most likely first
    logp   (N, T, K)  their log-probabilities at the KD temperature tau (fp16: log-probabilities
                      of the top K lie in [-log V, 0], where fp16 is good to ~0.005)
    rest   (N, T)     log of the mass of every other token at tau (fp32; -inf when K = V)
    ce     (N, T)     the head's cross-entropy against the ids at tau = 1 (val/ce_orig)

The log-normaliser at tau is folded into ``logp`` and ``rest``: with them, the KL over the top K
plus the rest bucket is exact (``wavelab.wavgpt.model.distill.sparse_kd_and_ce``).

Layout: ``<cache_dir>/teacher/<token entry>-<key>/<split>_<array>.bin`` + ``meta.json``, beside
the token cache (``wavelab.data.cache``), whose entry name already pins the corpus content, the
tokenizer, the block size and the split. ``key`` hashes the rest of what the arrays depend on:
the encoder's weight fingerprint, layer and head, K, tau and this format's version. A build
writes into a temp dir named after its pid and renames it into place when complete, under a lock
file: a second job that wants the same entry waits for the first (saying whose pid it waits for)
and then reuses it, and a job killed mid-build leaves only a temp dir that the next build
removes. Before building, the cache's size (known from the block count and shapes) is checked
against ``max_gb`` and the disk's free space, and the files are preallocated. ``meta.json``
records every array's shape, dtype and sha256 and the key's fields; an entry whose meta or files
do not match what this corpus and encoder give (sizes, shapes, hashes, finite states, ids within
the vocabulary; checked on its first open in a process), or whose recorded encoder is not the one
asked for, is refused with an error that names it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from wavelab.core import atomic
from wavelab.core.errors import ConfigError
from wavelab.data.token_file import TokenFile
from wavelab.wavgpt.data import teacher_guard as guard
from wavelab.wavgpt.model.distill import teacher_topk

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: meta.json records each file's sha256
DEFAULT_MAX_GB = 50.0
ARRAYS = ("h", "idx", "logp", "rest", "ce")
# Blocks per teacher forward: the (blocks, T, V) logits stay near this many floats (256 MiB),
# and at most MAX_BLOCKS_PER_BATCH blocks (the encoder's activations).
LOGITS_PER_BATCH = 2**26
MAX_BLOCKS_PER_BATCH = 64


@dataclass(frozen=True)
class TeacherKey:
    """Everything the cached arrays depend on besides the token entry (corpus, tokenizer, T)."""

    encoder_fingerprint: str
    layer: int
    head: str
    top_k: int
    temperature: float
    version: int = FORMAT_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


class _Fp16Overflow(Exception):
    """Hidden states beyond fp16's range: the build restarts with fp32 states."""


def entry_dir(cache_dir: str | Path, token_entry: Path, key: TeacherKey) -> Path:
    return Path(cache_dir).expanduser() / "teacher" / f"{token_entry.name}-{key.digest()}"


def _shapes(n_blocks: int, block_size: int, d: int, k: int) -> dict[str, tuple[int, ...]]:
    return {
        "h": (n_blocks, block_size, d),
        "idx": (n_blocks, block_size, k),
        "logp": (n_blocks, block_size, k),
        "rest": (n_blocks, block_size),
        "ce": (n_blocks, block_size),
    }


def _dtypes(vocab_size: int, h_dtype: str) -> dict[str, str]:
    return {
        "h": h_dtype,
        "idx": "uint16" if vocab_size <= 2**16 else "int32",
        "logp": "float16",
        "rest": "float32",
        "ce": "float32",
    }


def expected_layout(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]], encoder, top_k: int, h_dtype: str
) -> tuple[dict, dict]:
    """({split: {array: shape}}, {array: dtype}) of the cache of ``splits`` under ``encoder``."""
    shapes = {
        split: _shapes(len(ids), ids.shape[1], encoder.d, top_k)
        for split, (ids, _) in splits.items()
    }
    return shapes, _dtypes(encoder.vocab_size, h_dtype)


def _schema_problem(meta: dict, shapes: Mapping, dtypes: Mapping) -> str | None:
    arrays = meta.get("arrays")
    if not isinstance(arrays, dict):
        return "meta.json has no arrays"
    if set(arrays) != set(shapes):
        return f"meta.json has the splits {sorted(arrays)}, expected {sorted(shapes)}"
    for split, specs in arrays.items():
        if not isinstance(specs, dict) or set(specs) != set(ARRAYS):
            return f"meta.json's {split} split does not have the arrays {list(ARRAYS)}"
        for name, spec in specs.items():
            want = [int(n) for n in shapes[split][name]]
            allowed = {dtypes[name]} | ({"float32"} if name == "h" else set())
            if not isinstance(spec, dict) or spec.get("dtype") not in allowed:
                got = spec.get("dtype") if isinstance(spec, dict) else spec
                return f"{split}_{name} has dtype {got!r}, expected {dtypes[name]}"
            if spec.get("shape") != want:
                return f"{split}_{name} has shape {spec.get('shape')}, expected {want}"
    return None


def read_meta(entry: Path, key: TeacherKey, layout: tuple[dict, dict] | None = None) -> dict | None:
    """The entry's meta.json when the entry is complete, else None. Raises ConfigError when it
    is damaged (``layout``: the shapes and dtypes it must have) or was made for another key
    (e.g. copied between machines or encoders)."""
    meta_path = entry / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        recorded = TeacherKey(**meta["key"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"teacher cache {entry} is damaged: meta.json is unreadable ({e})") from e
    if recorded != key:
        raise ConfigError(
            f"teacher cache {entry} is stale: it was built for encoder fingerprint "
            f"{recorded.encoder_fingerprint} (layer {recorded.layer}, K={recorded.top_k}, "
            f"tau={recorded.temperature}), not {key.encoder_fingerprint} (layer {key.layer}, "
            f"K={key.top_k}, tau={key.temperature}): delete that directory"
        )
    problem = _schema_problem(meta, *layout) if layout else None
    if problem:
        raise ConfigError(
            f"teacher cache {entry} is damaged: {problem}: delete that directory and it is rebuilt"
        )
    for split, arrays in meta["arrays"].items():
        for name, spec in arrays.items():
            path = entry / f"{split}_{name}.bin"
            want = math.prod(spec["shape"]) * np.dtype(spec["dtype"]).itemsize
            have = path.stat().st_size if path.is_file() else None
            if have != want:
                raise ConfigError(
                    f"teacher cache {entry} is damaged: {path.name} has {have} bytes, expected "
                    f"{want}: delete that directory and it is rebuilt"
                )
    return meta


def open_split(entry: Path, meta: dict, split: str) -> dict[str, TokenFile]:
    """The split's arrays, read a block at a time (``TokenFile``: not mapped, so a run holds
    only the blocks of its batches)."""
    return {
        name: TokenFile(entry / f"{split}_{name}.bin", spec["dtype"], tuple(spec["shape"][1:]))
        for name, spec in meta["arrays"][split].items()
    }


def _fill_split(
    directory: Path,
    split: str,
    ids: np.ndarray,
    lengths: np.ndarray,
    encoder,
    key: TeacherKey,
    h_dtype: str,
) -> dict[str, dict]:
    """Runs the encoder and head over every block of ``ids`` (N, T) into ``directory``."""
    n_blocks, block_size = ids.shape
    shapes = _shapes(n_blocks, block_size, encoder.d, key.top_k)
    dtypes = _dtypes(encoder.vocab_size, h_dtype)
    out = {}
    for name, shape in shapes.items():
        path = directory / f"{split}_{name}.bin"
        guard.preallocate(path, math.prod(shape) * np.dtype(dtypes[name]).itemsize)
        out[name] = np.memmap(path, dtype=dtypes[name], mode="r+", shape=shape)
    per_batch = LOGITS_PER_BATCH // (block_size * encoder.vocab_size)
    per_batch = min(max(1, per_batch), MAX_BLOCKS_PER_BATCH)
    positions = torch.arange(block_size)
    for start in tqdm(
        range(0, n_blocks, per_batch),
        desc=f"teacher cache: {split}",
        unit="batch",
        mininterval=2.0,
    ):
        end = min(start + per_batch, n_blocks)
        block_ids = torch.from_numpy(ids[start:end].astype(np.int64))
        mask = (
            positions[None, :] < torch.from_numpy(lengths[start:end].astype(np.int64))[:, None]
        ).long()
        with torch.inference_mode():
            h = encoder.hidden(block_ids, mask)
            top = teacher_topk(encoder.logits(h), key.top_k, key.temperature, block_ids)
        h = h.float().numpy()
        if not np.isfinite(h).all():
            raise ConfigError(
                f"the encoder {encoder.name_or_path} gives non-finite hidden states for blocks "
                f"{start}-{end - 1} of the {split} split: nothing was cached"
            )
        if h_dtype == "float16" and np.abs(h).max() > np.finfo(np.float16).max:
            raise _Fp16Overflow
        out["h"][start:end] = h
        out["idx"][start:end] = top.idx.numpy()
        out["logp"][start:end] = top.logp.numpy()
        out["rest"][start:end] = top.rest_logp.numpy()
        out["ce"][start:end] = top.ce.numpy()
    for array in out.values():
        array.flush()
    return {name: {"shape": list(shapes[name]), "dtype": dtypes[name]} for name in shapes}


def _build(
    entry: Path,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    encoder,
    key: TeacherKey,
    max_gb: float,
) -> dict:
    tmp = entry.with_name(f".{entry.name}.tmp{os.getpid()}")

    def remove_partial_files() -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    try:
        with guard.terminable(remove_partial_files):
            for h_dtype in ("float16", "float32"):
                check_size(entry, splits, encoder, key.top_k, max_gb, h_dtype)
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                try:
                    arrays = {
                        split: _fill_split(tmp, split, ids, lengths, encoder, key, h_dtype)
                        for split, (ids, lengths) in splits.items()
                    }
                    break
                except _Fp16Overflow:
                    log.warning("hidden states overflow fp16: caching them as fp32")
            hashes = {
                f"{split}_{name}": guard.file_digest(
                    tmp / f"{split}_{name}.bin", spec["dtype"], None
                )
                for split, specs in arrays.items()
                for name, spec in specs.items()
            }
            meta = {
                "key": asdict(key),
                "name_or_path": encoder.name_or_path,
                "arrays": arrays,
                "sha256": hashes,
            }
            atomic.write_text(tmp / "meta.json", json.dumps(meta, indent=1))
            tmp.rename(entry)  # the entry appears complete, or not at all
    finally:
        remove_partial_files()  # what a failed build wrote
    _VERIFIED.add(entry)
    return meta


def cache_bytes(splits, encoder, top_k: int, h_dtype: str = "float16") -> int:
    """The size on disk of the cache of ``splits`` under ``encoder``, before building it."""
    return guard.expected_bytes(*expected_layout(splits, encoder, top_k, h_dtype))


def describe(splits) -> str:
    ids = next(iter(splits.values()))[0]
    return f"{sum(len(i) for i, _ in splits.values())} blocks of {ids.shape[1]} tokens"


def fit_problem(cache_dir, splits, encoder, top_k: int, max_gb: float) -> str | None:
    """Why the cache of ``splits`` would not fit (None when it does), for ``teacher_cache=auto``."""
    n_bytes = cache_bytes(splits, encoder, top_k)
    problem = guard.size_problem(n_bytes, Path(cache_dir).expanduser() / "teacher", max_gb)
    return f"it would take {guard.gb(n_bytes)}, {problem}" if problem else None


def check_size(entry: Path, splits, encoder, top_k: int, max_gb: float, h_dtype: str) -> None:
    n_bytes = cache_bytes(splits, encoder, top_k, h_dtype)
    problem = guard.size_problem(n_bytes, entry.parent, max_gb)
    if problem:
        raise guard.too_big(n_bytes, describe(splits), entry.parent, problem)


def _remove_stale_builds(parent: Path) -> None:
    """Temp dirs of builds whose process is gone (killed mid-build)."""
    for path in parent.glob(".*.tmp*") if parent.is_dir() else ():
        match = atomic.TEMP_NAME.match(path.name)
        if match and path.is_dir() and not atomic.pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def load_or_build(
    cache_dir: str | Path,
    token_entry: Path,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    encoder,
    top_k: int,
    temperature: float,
    max_gb: float = DEFAULT_MAX_GB,
) -> tuple[Path, dict]:
    """The teacher cache entry of ``splits`` ({split: (ids (N, T), lengths (N,))}, the blocks of
    ``token_entry``) under ``encoder`` (a ``FrozenEncoder``); built on a miss, unless it would
    take more than ``max_gb`` GB or the disk's free space (a ConfigError that says so)."""
    if top_k > encoder.vocab_size:
        raise ConfigError(
            f"model.kd_top_k={top_k} is invalid: the encoder's vocabulary has only "
            f"{encoder.vocab_size} tokens"
        )
    key = TeacherKey(encoder.fingerprint, encoder.layer, encoder.head, top_k, float(temperature))
    entry = entry_dir(cache_dir, token_entry, key)
    layout = expected_layout(splits, encoder, top_k, "float16")
    meta = read_meta(entry, key, layout)
    if meta is not None:
        return entry, _verified(entry, meta, encoder)
    what = f"the teacher cache {entry}"
    with guard.locked(entry.with_name(f".{entry.name}.lock"), what):
        meta = read_meta(entry, key, layout)  # built by another job while this one waited
        if meta is not None:
            return entry, _verified(entry, meta, encoder)
        _remove_stale_builds(entry.parent)
        n_blocks = sum(len(ids) for ids, _ in splits.values())
        log.info(
            "building the teacher cache (once for this corpus, encoder, K=%d and tau=%g; every "
            "later run reuses it): %d blocks into %s",
            top_k,
            temperature,
            n_blocks,
            entry,
        )
        return entry, _build(entry, splits, encoder, key, max_gb)


_VERIFIED: set[Path] = set()  # entries whose contents this process has checked


def _verified(entry: Path, meta: dict, encoder) -> dict:
    if entry not in _VERIFIED:
        guard.verify(entry, meta, encoder.vocab_size)
        _VERIFIED.add(entry)
    return meta
