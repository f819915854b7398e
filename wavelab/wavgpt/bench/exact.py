"""The exact codec's speed and bits per block, beside raw LZMA2 on the same blocks.

    taskset -c 0 python -m wavelab.bench exact threads=1 prior=<wordpiece GPT ckpt>

Keys: conf/bench.yaml and conf/bench/exact.yaml. Blocks are runs of the complete works, framed
``[CLS] ... [SEP]`` by the packaged all-MiniLM-L6-v2 tokenizer. Per block, interleaved and in
process CPU time: the exact coder under the prior alone (``wavelab.wavgpt.codec.exact``; the
sequential part of every mode, which the head adds one batched pass to) encoding, then decoding,
then raw LZMA2 compressing and decompressing the block's text. ``prior=null`` uses an untrained
4×128 GPT (conf/model/gpt.yaml) on the same vocabulary: the speed is a trained one's, the bits
are not (about log2 V per token).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from dataclasses import asdict, dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from wavelab.bench import check_count, check_settings, load_line, publish, settings_from
from wavelab.bench.machine import prepare
from wavelab.wavgpt.bench.codec import corpus_texts, cpu_seconds
from wavelab.wavgpt.metrics.text_rates import lzma_raw, lzma_raw_decompress

PACKAGED_ENCODER = "packaged:all-MiniLM-L6-v2"


@dataclass
class Settings:
    texts: int = 16  # blocks timed
    words: int = 40  # words per block (about 1.3 word pieces each)
    repeats: int = 1  # interleaved timed rounds
    warmup: int = 1  # untimed rounds first
    threads: int | None = 1  # torch threads; None: torch's default
    prior: str | None = None  # a WordPiece GPT checkpoint; None: an untrained conf/model/gpt

    def validate(self) -> None:
        check_settings(asdict(self))
        for key in ("texts", "words"):
            check_count(key, getattr(self, key), 1)


def load_prior(path: str | None):
    from wavelab.core.checkpoints import load_module
    from wavelab.core.compose import compose
    from wavelab.core.config import instantiate

    if path is not None:
        return load_module(path, key="prior").eval()
    with tempfile.TemporaryDirectory() as output_dir:
        overrides = ["model=gpt", "data=shakespeare_wordpiece_lm", "model.net.vocab_size=30522"]
        return instantiate(compose(overrides, output_dir=output_dir).model).eval()


def run(settings: Settings) -> dict:
    from wavelab.wavgpt.codec.exact import ExactCoder, Frame
    from wavelab.wavgpt.model.encoder import load_tokenizer

    load_before = prepare(settings)
    tok = load_tokenizer(PACKAGED_ENCODER)
    lm = load_prior(settings.prior)
    coder = ExactCoder("prior", Frame(tok.cls_token_id, tok.sep_token_id), len(tok), prior=lm)
    texts = corpus_texts(settings.texts, settings.words)
    blocks = [tok(t, truncation=True, max_length=lm.context_size)["input_ids"] for t in texts]
    seconds = {name: [[] for _ in blocks] for name in ("encode", "decode", "lzma_c", "lzma_d")}
    bits, ideal, lzma_bits, exact = [], [], [], []
    for round_ in range(settings.warmup + settings.repeats):
        for i, ids in enumerate(blocks):
            t_enc, (record, block_ideal) = cpu_seconds(coder.measured_block, ids)
            t_dec, decoded = cpu_seconds(coder.decode_block, record)
            data = tok.decode(ids, skip_special_tokens=True).encode()
            t_lc, packed = cpu_seconds(lzma_raw, data)
            t_ld, _ = cpu_seconds(lzma_raw_decompress, packed)
            if round_ < settings.warmup:
                continue
            for name, value in zip(seconds, (t_enc, t_dec, t_lc, t_ld)):
                seconds[name][i].append(value)
            if round_ == settings.warmup:
                bits.append(8 * len(record.payload))
                ideal.append(block_ideal)
                lzma_bits.append(8 * len(packed))
                exact.append(decoded == list(ids))
    body_tokens = np.array([len(b) - 2 for b in blocks])
    total = {name: sum(statistics.median(s) for s in rows) for name, rows in seconds.items()}
    return {
        "settings": asdict(settings),
        "blocks": len(blocks),
        "tokens": int(body_tokens.sum()),
        "threads": torch.get_num_threads(),
        "tokens_per_cpu_s": {name: float(body_tokens.sum() / s) for name, s in total.items()},
        "payload_bits_per_token": float(sum(bits) / body_tokens.sum()),
        "ideal_bits_per_token": float(sum(ideal) / body_tokens.sum()),
        "payload_over_ideal_bits_per_block": float(np.mean(np.array(bits) - np.array(ideal))),
        "payload_to_ideal": float(sum(bits) / sum(ideal)),
        "lzma_raw_bits_per_token": float(sum(lzma_bits) / body_tokens.sum()),
        "exact_blocks": float(np.mean(exact)),
        "env": {"loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg())},
    }


def format_table(r: dict) -> str:
    speed = r["tokens_per_cpu_s"]
    prior = r["settings"]["prior"] or "untrained 4x128 GPT"
    return "\n".join(
        [
            f"exact codec, prior alone ({prior}), {r['blocks']} blocks, {r['tokens']} tokens, "
            f"{r['threads']} thread(s); tokens per CPU second, median over rounds",
            f"  encode  {speed['encode']:10.0f}   decode  {speed['decode']:10.0f}",
            f"  raw LZMA2 of the text: compress {speed['lzma_c']:10.0f}   decompress "
            f"{speed['lzma_d']:10.0f}",
            f"  payload {r['payload_bits_per_token']:.2f} bits/token, ideal "
            f"{r['ideal_bits_per_token']:.2f} ({r['payload_to_ideal']:.4f}x, "
            f"+{r['payload_over_ideal_bits_per_block']:.1f} bits per block); raw LZMA2 "
            f"{r['lzma_raw_bits_per_token']:.2f}",
            f"  exact blocks {r['exact_blocks']:.3f}",
            load_line(r["env"]),
        ]
    )


def main(cfg: DictConfig) -> None:
    """``python -m wavelab.bench exact``: ``cfg`` is conf/bench.yaml with conf/bench/exact.yaml."""
    result = run(settings_from(Settings, cfg))
    publish(result, format_table(result), cfg.json)
