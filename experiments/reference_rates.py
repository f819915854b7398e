"""The lossless references on a run's held-out blocks: ``python experiments/reference_rates.py CKPT``.

Every held-out block of the WavGPT run that wrote CKPT (its saved data config), [CLS] and [SEP]
included: each text coder's bits per token (total over total, ``wavelab.wavgpt.metrics.text_rates``),
the ids compressed per block with their exactness measured by decompressing, and how many blocks'
decoded texts re-tokenize to other ids (experiments/wavgpt_exact.md quotes them). Prints JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from wavelab.core.saved_config import run_data_config
from wavelab.wavgpt.metrics.text_rates import coded_ids, reference_bits_per_token
from wavelab.wavgpt.model.encoder import load_tokenizer
from wavelab.wavgpt.study.held_out import held_out_batches


def main(ckpt: str) -> None:
    tokenizer = load_tokenizer(run_data_config(Path(ckpt)).tokenizer)
    rows, texts = [], []
    for batch in held_out_batches(ckpt, None, 64, "cpu", "CKPT"):
        for row, n in zip(batch["input_ids"], batch["attention_mask"].sum(1)):
            rows.append(row[: int(n)].tolist())
            texts.append(tokenizer.decode(rows[-1], skip_special_tokens=True))
    tokens = sum(len(r) for r in rows)
    rates = reference_bits_per_token(texts, tokens, tokenizer.vocab_size)
    for name in ("lzma", "zlib", "zstd"):
        bits, _, exact = coded_ids(rows, name)
        rates[f"{name}_ids_block"], rates[f"{name}_ids_block_exact"] = bits / tokens, exact
    room = max(len(r) for r in rows)
    retokenized = [tokenizer(t, truncation=True, max_length=room)["input_ids"] for t in texts]
    other = sum(back != ids for back, ids in zip(retokenized, rows))
    print(
        json.dumps(
            {
                "blocks": len(rows),
                "tokens": tokens,
                "rates": rates,
                "texts_retokenized_to_other_ids": other,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
