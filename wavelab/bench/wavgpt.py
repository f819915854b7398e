"""Where a WavGPT training step spends its time, and how much memory it needs.

    python -m wavelab.bench wavgpt                    # MiniLM, Shakespeare, T=256, batch 8
    python -m wavelab.bench wavgpt --json wavgpt.json model.keep_ratio=0.125   # Hydra overrides

The model and data are composed from the real conf/ (``model=wavgpt``: the packaged
all-MiniLM-L6-v2, default refinement, Shakespeare blocks from ``WordPieceDataModule``), and the
optimizer is the module's own ``configure_optimizers``. A bare loop then runs the training step
one stage at a time, with a timer around each:

    encoder   frozen encoder forward            refine     refiner forward
    dwt       lifting transform                 head_loss  student + teacher logits, loss
    filter    scores, top-k, masks              step       backward, clipping, AdamW step
    inverse   inverse lifting transform

The stages are exactly ``WavGPTCore.forward`` and ``WavGPTModule._shared_step`` taken apart
(tests check it). Filter and lifting also cost time in the backward pass, hidden in ``step``;
``lifting_backward`` times it separately, by a backward pass through those three stages alone,
and the table adds it to their share. Medians over the timed steps; other processes on the
machine add noise, which the load averages printed before and after help judge.

On a shared CPU, use ``--threads 1``: when another process keeps a core busy, torch's second
thread turns every small elementwise op (all of lifting and the filter) into a wait of
milliseconds, about 100x their cost, and their share then measures the contention, not the code.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from wavelab.bench import load_line, publish
from wavelab.config import CONFIG_DIR, instantiate
from wavelab.lit.wavgpt import WavGPTModule
from wavelab.models.wavgpt import distillation_loss

SECTIONS = ("encoder", "dwt", "filter", "inverse", "refine", "head_loss", "step")
LIFTING = ("dwt", "filter", "inverse")
TARGET_SHARE = 0.10  # filter + lifting should stay below this fraction of a training step


@dataclass
class Settings:
    steps: int = 3  # timed steps
    warmup: int = 1  # untimed steps first (allocator, lazy init)
    threads: int | None = None  # torch threads; None: torch's default
    overrides: tuple[str, ...] = ()  # extra Hydra overrides, applied last

    def validate(self) -> None:
        if self.steps < 1 or self.warmup < 0:
            raise ValueError("need steps >= 1 and warmup >= 0")


class Clock:
    """Seconds per named section, one entry per call; waits for the GPU at both ends."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds: dict[str, list[float]] = {}

    @contextmanager
    def __call__(self, name: str):
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds.setdefault(name, []).append(time.perf_counter() - t0)


def compose_config(settings: Settings, output_dir: str) -> DictConfig:
    overrides = ["model=wavgpt", f"paths.output_dir={output_dir}", *settings.overrides]
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(config_name="config", overrides=overrides)


def forward_stages(module: WavGPTModule, ids, mask, clock: Clock) -> dict:
    """The training forward pass, one timed stage at a time; returns its tensors."""
    encoder, core = module.encoder, module.core
    with clock("encoder"):
        h = encoder.hidden(ids, mask)
    m = mask.bool()
    with clock("dwt"):
        coeffs = core.dwt(h * m[..., None])
    with clock("filter"):
        kept, keep, *_ = core.filter(coeffs, m, core.dwt.support_mask(m))
    with clock("inverse"):
        h_hat = core.dwt.inverse(kept)
    with clock("refine"):
        refined = core.refiner(h_hat, m)
    with clock("head_loss"):
        loss, _ = distillation_loss(
            encoder.logits(refined),
            encoder.logits(h),
            ids,
            mask,
            module.cfg,
            refined=refined,
            target_h=h,
            approx=h_hat,
        )
    return {
        "h": h,
        "coeffs": coeffs,
        "keep": keep,
        "h_hat": h_hat,
        "refined": refined,
        "loss": loss,
    }


def train_step(module, optimizer, clip: float | None, ids, mask, clock: Clock) -> None:
    loss = forward_stages(module, ids, mask, clock)["loss"]
    with clock("step"):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(module.core.parameters(), clip)
        optimizer.step()


def lifting_backward(module: WavGPTModule, ids, mask, clock: Clock) -> None:
    """Times the backward pass through dwt, filter and inverse alone (grads are discarded)."""
    core, m = module.core, mask.bool()
    h = module.encoder.hidden(ids, mask)
    kept, *_ = core.filter(core.dwt(h * m[..., None]), m, core.dwt.support_mask(m))
    h_hat = core.dwt.inverse(kept)
    grad = torch.randn_like(h_hat)
    with clock("lifting_backward"):
        h_hat.backward(grad)
    core.zero_grad(set_to_none=True)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated, or the process's peak resident set size, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(settings: Settings) -> dict:
    settings.validate()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose_config(settings, output_dir)
        L.seed_everything(cfg.seed, verbose=False)
        data = instantiate(cfg.data)
        data.prepare_data()
        data.setup("fit")
        module = instantiate(cfg.model).to(device).train()
    optimizer = module.configure_optimizers()["optimizer"]
    clip = cfg.trainer.get("gradient_clip_val")
    clock = Clock(device)
    real_tokens, padded_tokens = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    memory_before = peak_memory_mb(device)
    batches = iter(data.train_dataloader())
    for i in range(settings.warmup + settings.steps):
        if i == settings.warmup:  # forget the warmup's timings
            clock.seconds.clear()
        batch = next(batches)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        train_step(module, optimizer, clip, ids, mask, clock)
        lifting_backward(module, ids, mask, clock)
        real_tokens.append(int(mask.sum()))
        padded_tokens.append(mask.numel())
    memory_after = peak_memory_mb(device)
    load_after = os.getloadavg()

    ms = {name: 1000 * statistics.median(s) for name, s in clock.seconds.items()}
    step_ms = sum(ms[s] for s in SECTIONS)
    lifting_ms = sum(ms[s] for s in LIFTING)
    step_s = [sum(clock.seconds[s][i] for s in SECTIONS) for i in range(settings.steps)]
    timed_real = real_tokens[settings.warmup :]
    return {
        "settings": asdict(settings),
        "config": {
            "encoder": cfg.model.encoder.name_or_path,
            "d": module.encoder.d,
            "block_size": cfg.data.block_size,
            "batch_size": cfg.data.batch_size,
            "keep_ratio": cfg.model.keep_ratio,
            "refine": cfg.model.refine,
            "refine_layers": cfg.model.refine_layers,
            "levels": module.core.dwt.levels,
            "corpus": cfg.data.path or cfg.data.corpus,
        },
        "env": {
            "device": str(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "ms": ms,
        "step_ms": step_ms,
        "lifting_share_forward": lifting_ms / step_ms,
        "lifting_share": (lifting_ms + ms["lifting_backward"]) / step_ms,
        "tokens_per_s_padded": sum(padded_tokens[settings.warmup :]) / sum(step_s),
        "tokens_per_s_real": sum(timed_real) / sum(step_s),
        "real_fraction": sum(timed_real) / sum(padded_tokens[settings.warmup :]),
        "peak_memory_mb": memory_after,
        "peak_memory_delta_mb": memory_after - memory_before,
        "memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS",
    }


def format_table(result: dict) -> str:
    c, e, s, ms = result["config"], result["env"], result["settings"], result["ms"]
    step = result["step_ms"]
    lines = [
        f"WavGPT on {c['encoder']} (d={c['d']}): block_size={c['block_size']} "
        f"batch_size={c['batch_size']} keep_ratio={c['keep_ratio']} levels={c['levels']} "
        f"refine={c['refine']} ({c['refine_layers']} layers), corpus {c['corpus']}",
        f"{e['device']}, torch {e['torch']}, {e['threads']} threads on {e['cpu_count']} CPUs; "
        f"median of {s['steps']} steps after {s['warmup']} warmup",
        load_line(e),
        "",
        f"{'section':<22}{'ms':>10}{'share':>9}",
    ]
    for name in (*SECTIONS, "lifting_backward"):
        note = "  (inside step, timed apart)" if name == "lifting_backward" else ""
        lines.append(f"{name:<22}{ms[name]:>10.1f}{100 * ms[name] / step:>8.1f}%{note}")
    share = result["lifting_share"]
    verdict = "ok" if share < TARGET_SHARE else f"ABOVE the {TARGET_SHARE:.0%} target"
    lines += [
        f"{'training step':<22}{step:>10.1f}{100.0:>8.1f}%",
        "",
        f"filter + lifting: {result['lifting_share_forward']:.1%} of the step forward only, "
        f"{share:.1%} with their backward ({verdict})",
        f"throughput: {result['tokens_per_s_padded']:,.0f} tokens/s padded, "
        f"{result['tokens_per_s_real']:,.0f} tokens/s real ({result['real_fraction']:.0%} real)",
        f"memory ({result['memory_kind']}): peak {result['peak_memory_mb']:,.0f} MiB, "
        f"+{result['peak_memory_delta_mb']:,.0f} MiB during training",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Settings()
    parser.add_argument("--steps", type=int, default=d.steps, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch threads")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.keep_ratio=0.125")


def main(args: argparse.Namespace) -> None:
    settings = Settings(
        steps=args.steps,
        warmup=args.warmup,
        threads=args.threads,
        overrides=tuple(args.overrides),
    )
    result = run(settings)
    publish(result, format_table(result), args.json)
