"""The WavGPT codec's round-trip speed per text, beside the original repository's procedure.

    python -m wavelab.bench codec threads=1          # MiniLM, T=256, keep 1/16, B=1 per text
    taskset -c 0 python -m wavelab.bench codec threads=1 words=180

Keys: conf/bench.yaml and conf/bench/codec.yaml. The module is composed from the real conf/
(``model=wavgpt``, untrained: speed does not depend on training). Texts are runs of the complete
works; their hidden states are computed once, up front, so the frozen encoder is left out on
both sides. One round trip is, per text (B=1):

    ours        ``WavGPTCodec.encode_hidden`` (lifting, filter, quantization), ``to_bytes``,
                ``from_bytes``, ``WavGPTCodec.decode`` (inverse, refiner and head at the real
                tokens only, the head's argmax through the exact int8 screen of
                ``ScreenedArgmax``, tokenizer)
    reference   the original repository's embed/decode procedure (samarth-kadaba/WavGPT,
                src/wavgpt/embed/embeddings.py), re-implemented on our core: embed runs the
                whole core, refiner included, and keeps the kept coefficients as (k, 2) indices
                and (k,) values; decode fills a dense (1, T, d) tensor and mask one coefficient
                at a time in Python, then inverse, refiner and head over all T steps, and the
                argmax of the real tokens through the tokenizer. It never serializes.

The two run interleaved (ours, reference, next text), timed in process CPU time (user + sys),
so other processes on a shared machine add little; medians over rounds, then over texts. Two
stages of ours are timed beside them on each text's own inputs: the refiner, and the head
(``FrozenEncoder.argmax``, what decode runs, against the fp32 logits' argmax).

The floor says how far an exact decoder of this shape could go on this core: the refiner's
multiply-adds (torch's FLOP counter) at the core's peak fp32 matmul rate, plus the head's int8
product (the one pass over the vocabulary the screen needs), with nothing else, not even encoding.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from wavelab.bench import check_count, check_settings, load_line, publish, settings_from
from wavelab.bench.machine import prepare
from wavelab.core.compose import compose
from wavelab.core.config import instantiate
from wavelab.data.corpora import shakespeare_complete_works
from wavelab.wavgpt.code.sparse_code import SparseCode
from wavelab.wavgpt.codec.api import WavGPTCodec
from wavelab.wavgpt.model.coding import Code
from wavelab.wavgpt.model.screened_argmax import ScreenedArgmax


@dataclass
class Settings:
    texts: int = 16  # texts timed
    words: int = 60  # words per text
    repeats: int = 3  # interleaved timed rounds
    warmup: int = 1  # untimed rounds first
    threads: int | None = None  # torch threads; None: torch's default
    overrides: tuple[str, ...] = ()  # extra Hydra overrides of the model config

    def validate(self) -> None:
        check_settings(asdict(self))
        for key in ("texts", "words"):
            check_count(key, getattr(self, key), 1)


def corpus_texts(n: int, words: int) -> list[str]:
    """n runs of ``words`` words each, spread over the complete works."""
    tokens = shakespeare_complete_works().split()
    stride = (len(tokens) - words) // n
    return [" ".join(tokens[i * stride : i * stride + words]) for i in range(n)]


@torch.inference_mode()
def ours(codec: WavGPTCodec, h: torch.Tensor, mask: torch.Tensor) -> str:
    (code,) = codec.encode_hidden(h, mask)
    return codec.decode([SparseCode.from_bytes(code.to_bytes())])[0]


@torch.inference_mode()
def reference_embed(codec: WavGPTCodec, h: torch.Tensor, mask: torch.Tensor) -> dict:
    """The original embed: the whole core forward, then the kept coefficients in COO form."""
    out = codec.module.core(h, mask)
    keep = out.code.keep[0].bool()  # (T, d)
    return {
        "indices": torch.nonzero(keep),  # (k, 2): [step, channel]
        "values": out.code.values[0][keep],  # (k,)
        "shape": tuple(keep.shape),
        "num_real_tokens": int(mask.sum()),
    }


@torch.inference_mode()
def reference_decode(codec: WavGPTCodec, embedding: dict) -> str:
    """The original decode: a per-coefficient Python fill of dense tensors, then inverse,
    refiner and head over the whole block, and the real tokens' argmax as text."""
    core, n = codec.module.core, embedding["num_real_tokens"]
    dense = torch.zeros((1, *embedding["shape"]))
    kept_mask = torch.zeros_like(dense, dtype=torch.bool)
    for (t, c), value in zip(embedding["indices"], embedding["values"]):
        dense[0, t, c] = value
        kept_mask[0, t, c] = True
    token_mask = torch.arange(dense.shape[1])[None, :] < n
    refined = core.refiner(core.dwt.inverse(dense), token_mask)
    logits = codec.module.encoder.logits(refined)
    ids = logits[0, :n].argmax(-1).tolist()
    return codec.tokenizer.decode(ids, skip_special_tokens=True)


def reference(codec: WavGPTCodec, h: torch.Tensor, mask: torch.Tensor) -> str:
    return reference_decode(codec, reference_embed(codec, h, mask))


@torch.inference_mode()
def decoder_inputs(codec: WavGPTCodec, h: torch.Tensor, mask: torch.Tensor) -> dict:
    """What our decoder's refiner and head read for this text: the inverse transform at the real
    tokens, (1, n, d) with its mask, and the refined states, (n, d)."""
    n = int(mask.sum())
    (code,) = codec.encode_hidden(h, mask)
    values = torch.from_numpy(SparseCode.batch_to_dense([code]))
    inverse = codec.module.core.decode(Code(values, mask.bool()))
    states, real = codec.hidden([code])
    return {"refiner": (inverse[:, :n], mask[:, :n]), "head": states[real.bool()]}


def refiner_macs(refiner: torch.nn.Module, h: torch.Tensor, mask: torch.Tensor) -> int:
    """Multiply-adds in the refiner's matrix products on one text. Counted on the module's plain
    path (with grad on: the fused inference kernel is one op the counter cannot see into); the
    attention scores' own products are not counted, so this errs low, as a floor should."""
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        refiner(h.clone(), mask.clone())
    return counter.get_total_flops() // 2


def peak_fp32_macs_per_second(size: int = 1024, repeats: int = 5) -> float:
    """This core's fp32 matmul rate at a large square shape, multiply-adds per CPU second (best
    of ``repeats``): what no smaller product on the same threads beats."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(cpu_seconds(torch.mm, a, b)[0] for _ in range(repeats))
    return size**3 / best


def cpu_seconds(fn, *args) -> tuple[float, str]:
    start = time.process_time()
    result = fn(*args)
    return time.process_time() - start, result


def run(settings: Settings) -> dict:
    load_before = prepare(settings)
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose(["model=wavgpt", *settings.overrides], output_dir=output_dir)
        module = instantiate(cfg.model).eval()
    codec = WavGPTCodec(module, batch_size=1)
    ids, mask = codec.tokenize(corpus_texts(settings.texts, settings.words))
    with torch.inference_mode():  # the frozen encoder, left out of the timings
        hidden = [(module.encoder.hidden(i[None], m[None]), m[None]) for i, m in zip(ids, mask)]
    inputs = [decoder_inputs(codec, h, m) for h, m in hidden]
    encoder = module.encoder
    screen = ScreenedArgmax(encoder.model.get_input_embeddings().weight)
    peak_rate = peak_fp32_macs_per_second()
    refiner_seconds_at_peak = [
        refiner_macs(module.core.refiner, *i["refiner"]) / peak_rate for i in inputs
    ]
    timed = {
        "ours": lambda i: ours(codec, *hidden[i]),
        "reference": lambda i: reference(codec, *hidden[i]),
        "refiner": lambda i: module.core.refiner(*inputs[i]["refiner"]),
        "head_argmax": lambda i: encoder.argmax(inputs[i]["head"]),
        "head_logits": lambda i: encoder.logits(inputs[i]["head"]).argmax(-1),
        "head_int8_product": lambda i: screen.int8_product(inputs[i]["head"]),
    }
    seconds = {name: [[] for _ in hidden] for name in timed}
    same_text = []
    with torch.inference_mode():
        for round_ in range(settings.warmup + settings.repeats):
            for i in range(len(hidden)):
                results = {}
                for name, fn in timed.items():
                    elapsed, results[name] = cpu_seconds(fn, i)
                    if round_ >= settings.warmup:
                        seconds[name][i].append(elapsed)
                if round_ >= settings.warmup:
                    same_text.append(results["ours"] == results["reference"])
    per_text = {name: [statistics.median(s) for s in rows] for name, rows in seconds.items()}
    per_text["floor"] = [
        peak + product
        for peak, product in zip(refiner_seconds_at_peak, per_text["head_int8_product"])
    ]
    median = {name: statistics.median(values) for name, values in per_text.items()}
    return {
        "settings": asdict(settings),
        "block_size": codec.block_size,
        "d": codec.d,
        "keep_ratio": module.cfg.keep_ratio,
        "value_bits": module.cfg.value_bits,
        "mean_tokens": float(mask.sum(1).float().mean()),
        "threads": torch.get_num_threads(),
        "seconds_per_text": median,
        "per_text": per_text,
        "speedup": median["reference"] / median["ours"],
        "speedup_at_floor": median["reference"] / median["floor"],
        "peak_fp32_macs_per_second": peak_rate,
        "same_text": sum(same_text) / len(same_text),
        "env": {"loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg())},
    }


def format_table(result: dict) -> str:
    s = result["seconds_per_text"]
    return "\n".join(
        [
            f"codec round trip per text (B=1, T={result['block_size']}, d={result['d']}, keep "
            f"{result['keep_ratio']:.4g}, {result['value_bits']}-bit values, "
            f"{result['mean_tokens']:.0f} real tokens on average, {result['threads']} threads; "
            "encoder excluded; CPU time, median)",
            f"  ours       {1e3 * s['ours']:9.2f} ms",
            f"  reference  {1e3 * s['reference']:9.2f} ms   (original repository's procedure)",
            f"  speedup    {result['speedup']:9.1f}x",
            f"  ours' refiner {1e3 * s['refiner']:.2f} ms and head {1e3 * s['head_argmax']:.2f} ms "
            f"(the head as fp32 logits' argmax: {1e3 * s['head_logits']:.2f} ms)",
            f"  floor      {1e3 * s['floor']:9.2f} ms   (the refiner's matmuls at this core's peak "
            f"fp32 rate, {result['peak_fp32_macs_per_second'] / 1e9:.0f} GMAC/s, + the head's "
            f"int8 product: {result['speedup_at_floor']:.1f}x at most)",
            f"  same decoded text in {100 * result['same_text']:.0f}% of round trips",
            load_line(result["env"]),
        ]
    )


def main(cfg: DictConfig) -> None:
    """``python -m wavelab.bench codec``: ``cfg`` is conf/bench.yaml with conf/bench/codec.yaml."""
    result = run(settings_from(Settings, cfg))
    publish(result, format_table(result), cfg.json)
