"""Token accuracy, exact blocks and decoding cost of WavGPT checkpoints' codes, decoded by the
head alone (λ = 0) and with a language-model prior at each given weight (``wavgpt.prior``), on
the same blocks. The refined states of each block go through the frozen head once; only the
decoding differs between weights. The cost is CPU seconds per block of the decoding alone."""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
from torch import Tensor

from wavelab.wavgpt.codec.prior import PriorDecoder
from wavelab.wavgpt.config import PriorSettings
from wavelab.wavgpt.module import WavGPTModule
from wavelab.wavgpt.study.retrieval.scale import check_comparable


@torch.inference_mode()
def decode_with_prior(
    modules: dict[str, WavGPTModule],
    batches: Iterable[dict[str, Tensor]],
    lm,
    settings: list[PriorSettings],
) -> dict[str, dict[str, float]]:
    """{"<checkpoint> weight=<λ>": {acc, exact_blocks, decode_cpu_s_per_block, bits_per_token,
    blocks, acc_candidates, exact_blocks_candidates}} for every checkpoint and every one of
    ``settings`` (which differ in their weight alone).

    ``*_candidates`` bound what any prior can reach with these settings: the tokens that are
    among their position's ``candidates`` most likely head tokens, and the blocks whose every
    token is (the same for every weight; a decoded token is always a candidate)."""
    check_comparable(modules)
    decoders = {s.weight: PriorDecoder(lm, s) for s in settings}
    totals = {(name, w): [0, 0, 0.0] for name in modules for w in decoders}  # right, exact, cpu s
    bits = dict.fromkeys(modules, 0.0)  # in all
    block_rates = dict.fromkeys(modules, 0.0)  # the sum of each block's bits per token
    reachable = {name: [0, 0] for name in modules}  # tokens, blocks among the candidates
    blocks = tokens = 0
    encoder = next(iter(modules.values())).encoder
    for batch in batches:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        h = encoder.hidden(ids, mask)
        lengths = mask.sum(1).tolist()
        blocks, tokens = blocks + len(ids), tokens + int(mask.sum())
        for name, module in modules.items():
            out = module.core(h, mask)
            sent = module.core.sent_bits(out.code, module.fingerprint_bytes())
            bits[name] += float(sent.sum())
            block_rates[name] += float((sent / mask.sum(1)).sum())
            head_logp = torch.log_softmax(encoder.logits(out.refined).float(), dim=-1)
            n_candidates = min(settings[0].candidates, head_logp.shape[-1])
            top = head_logp.topk(n_candidates, dim=-1).indices  # (B, T, candidates)
            among = (top == ids[..., None]).any(-1) & mask.bool()  # (B, T)
            reachable[name][0] += int(among.sum())
            reachable[name][1] += int((among.sum(1) == mask.sum(1)).sum())
            for w, decoder in decoders.items():
                total = totals[(name, w)]
                for b, n in enumerate(lengths):
                    start = time.process_time()
                    decoded = decoder.decode(head_logp[b, :n])
                    total[2] += time.process_time() - start
                    right = sum(int(x == y) for x, y in zip(decoded, ids[b, :n].tolist()))
                    total[0] += right
                    total[1] += int(right == n)
    return {
        f"{name} weight={w}": {
            "acc": right / tokens,
            "exact_blocks": exact / blocks,
            "decode_cpu_s_per_block": cpu / blocks,
            "bits_per_token": bits[name] / tokens,
            "bits_per_token_block_mean": block_rates[name] / blocks,
            "blocks": float(blocks),
            "acc_candidates": reachable[name][0] / tokens,
            "exact_blocks_candidates": reachable[name][1] / blocks,
        }
        for (name, w), (right, exact, cpu) in totals.items()
    }
