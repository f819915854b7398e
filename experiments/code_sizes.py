"""Bits per token of WavGPT codes at each value width: ``python experiments/code_sizes.py``.

16 texts of 150 words of the complete works, MiniLM, T=256, keep 1/16, an untrained module (code
sizes depend on which coefficients are kept, not on how well they decode), format version 3.
Prints one markdown row per (value_bits, value_scale): bits per token sent, the ideal, and the
compression against the raw token ids (experiments/wavgpt_codes.md quotes them).
"""

from __future__ import annotations

import statistics
import tempfile

import torch

from wavelab.core.compose import compose
from wavelab.core.config import instantiate
from wavelab.data.corpora import shakespeare_complete_works
from wavelab.wavgpt.codec.api import WavGPTCodec

WIDTHS = ((16, "code"), (8, "code"), (8, "band"), (4, "code"), (4, "band"))


def main() -> None:
    torch.set_num_threads(1)
    words = shakespeare_complete_works()[200_000:].split()
    texts = [" ".join(words[i * 150 : (i + 1) * 150]) for i in range(16)]
    print("| value_bits | value_scale | bits/token sent | ideal | compression vs ids | tokens |")
    print("| --- | --- | --- | --- | --- | --- |")
    for bits, scale in WIDTHS:
        torch.manual_seed(0)
        overrides = ["model=wavgpt", f"model.value_bits={bits}", f"model.value_scale={scale}"]
        with tempfile.TemporaryDirectory() as output_dir:
            cfg = compose([*overrides, "data.teacher_cache=false"], output_dir=output_dir)
            module = instantiate(cfg.model)
        codec = WavGPTCodec(module)
        sizes = [codec.size(code) for code in codec.encode(texts)]
        sent, ideal, vs_ids, tokens = (
            statistics.mean(getattr(s, name) for s in sizes)
            for name in ("bits_per_token", "ideal_bits_per_token", "compression_vs_ids", "n_tokens")
        )
        print(f"| {bits} | {scale} | {sent:.1f} | {ideal:.1f} | {vs_ids:.3f} | {tokens:.0f} |")


if __name__ == "__main__":
    main()
