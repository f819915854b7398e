"""Generation speed: wavelab's KV cache, its full-window path and transformers' generate.

    python -m wavelab.bench sample
    python -m wavelab.bench sample models=[gpt] repeats=5 json=sample.json

Keys: conf/bench.yaml and conf/bench/sample.yaml (``--help`` lists them).

Each model is composed from the real conf/ (default data: the complete works, characters),
freshly initialised, and generates greedily from the same prompt with three generators: the
cached decoder (``wavelab.wavegpt.decode``), ``GPT.generate`` (the whole window per token), and
``generate`` of the ``transformers`` model that ``wavelab.export`` writes for it (which reads at
most ``block_size`` positions, so it runs only where the sequence stays within the block). Time
is CPU time (``time.process_time``) on ``threads`` cores; runs are interleaved and repeated, and
the fastest repeat of each is compared (other processes only ever add time).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from wavelab.bench import check_settings, load_line, publish, settings_from
from wavelab.bench.machine import prepare
from wavelab.core.compose import compose
from wavelab.core.config import instantiate
from wavelab.core.errors import ConfigError
from wavelab.data.corpora import shakespeare_complete_works
from wavelab.data.tokenizers import CharTokenizer
from wavelab.wavegpt import decode
from wavelab.wavegpt.hf.export import write_model_dir
from wavelab.wavegpt.model import GPT

WITHIN = "within"  # new tokens up to the end of the block


@dataclass
class Settings:
    models: tuple[str, ...] = ("wavegpt", "gpt")
    sizes: dict = field(default_factory=dict)
    new_tokens: tuple = (WITHIN, 500)
    prompt_tokens: int = 1
    repeats: int = 3
    threads: int | None = 1

    def validate(self) -> None:
        check_settings(asdict(self))
        for n in self.new_tokens:
            if n != WITHIN and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise ConfigError(
                    f"new_tokens={list(self.new_tokens)} is invalid: {WITHIN} or >= 1"
                )
        if self.prompt_tokens < 1:
            raise ConfigError(f"prompt_tokens={self.prompt_tokens} is invalid: must be >= 1")


def build(model: str, overrides: list[str], tokenizer: CharTokenizer):
    cfg = compose([f"model={model}", *overrides])
    return instantiate(cfg.model, "model", tokenizer=tokenizer.to_dict()).eval()


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def measure(module, hf_model, prompt: torch.Tensor, new: int, repeats: int) -> dict[str, float]:
    """The fastest CPU seconds of each generator over ``repeats`` interleaved runs."""
    net: GPT = module.net
    runs = {
        "cache": lambda: decode.generate(net, prompt, new, top_k=1),
        "full": lambda: GPT.generate(net, prompt, new, top_k=1),
    }
    if hf_model is not None and prompt.size(1) + new <= net.config.block_size:
        runs["transformers"] = lambda: hf_model.generate(
            prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False
        )
    outputs = {name: fn() for name, fn in runs.items()}  # warm-up, and the tokens to compare
    same = all(torch.equal(out[:, -new:], outputs["cache"][:, -new:]) for out in outputs.values())
    best = {name: float("inf") for name in runs}
    with torch.no_grad():
        for _ in range(repeats):
            for name, fn in runs.items():
                best[name] = min(best[name], cpu_seconds(fn))
    return {**{f"{k}_s": v for k, v in best.items()}, "same_tokens": same}


def run(settings: Settings) -> dict:
    load_before = prepare(settings)
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tokenizer = CharTokenizer.train(shakespeare_complete_works())
    prompt = torch.tensor([tokenizer.encode("\n" * settings.prompt_tokens)])
    rows = []
    for size, overrides in settings.sizes.items():
        for model in settings.models:
            module = build(model, list(overrides), tokenizer)
            block = module.net.config.block_size
            with tempfile.TemporaryDirectory() as tmp:
                write_model_dir(module, Path(tmp))
                hf_model = AutoModelForCausalLM.from_pretrained(tmp, trust_remote_code=True)
            hf_model.eval()
            for n in settings.new_tokens:
                new = block - prompt.size(1) if n == WITHIN else int(n)
                times = measure(module, hf_model, prompt, new, settings.repeats)
                c = module.net.config
                row = {
                    "size": size,
                    "model": model,
                    "mode": module.net.mode,
                    "n_layer": c.n_layer,
                    "n_embd": c.n_embd,
                    "block_size": block,
                    "new_tokens": new,
                    **times,
                }
                for name in ("cache", "full", "transformers"):
                    if f"{name}_s" in times:
                        row[f"{name}_tokens_per_s"] = new / times[f"{name}_s"]
                rows.append(row)
                logging.getLogger(__name__).info("%s", row)
    return {
        "settings": asdict(settings),
        "env": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "rows": rows,
    }


def format_table(result: dict) -> str:
    e, s = result["env"], result["settings"]
    lines = [
        f"greedy generation, prompt {s['prompt_tokens']} token(s); torch {e['torch']}, "
        f"{e['threads']} thread(s) on {e['cpu_count']} CPUs; fastest of {s['repeats']} "
        "interleaved repeats, tokens per CPU second",
        load_line(e),
        "",
        "| model | size | block | new | cache tok/s | full tok/s | cache / full "
        "| transformers tok/s | cache / transformers | same tokens |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        hf = r.get("transformers_tokens_per_s")
        hf_cells = ("n/a", "n/a")
        if hf is not None:
            hf_cells = (f"{hf:,.0f}", f"{r['cache_tokens_per_s'] / hf:.2f}x")
        name = r["model"] + (f" ({r['mode']})" if r["mode"] else "")
        lines.append(
            f"| {name} | {r['n_layer']}x{r['n_embd']} | {r['block_size']} | {r['new_tokens']} "
            f"| {r['cache_tokens_per_s']:,.0f} | {r['full_tokens_per_s']:,.0f} "
            f"| {r['cache_tokens_per_s'] / r['full_tokens_per_s']:.2f}x "
            f"| {hf_cells[0]} | {hf_cells[1]} "
            f"| {'yes' if r['same_tokens'] else 'NO'} |"
        )
    lines.append(
        "n/a: transformers' GPT-2 reads at most block_size positions, so it cannot continue past "
        "the block; wavelab's window slides (and its cache re-primes per token there)."
    )
    return "\n".join(lines)


def main(cfg: DictConfig) -> None:
    """``python -m wavelab.bench sample``."""
    settings = settings_from(Settings, cfg)
    settings.sizes = {name: list(overrides) for name, overrides in cfg.sizes.items()}
    result = run(settings)
    publish(result, format_table(result), cfg.json)
