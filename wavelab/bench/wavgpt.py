"""Where a WavGPT training step spends its time, and how much memory it needs.

    python -m wavelab.bench wavgpt                 # MiniLM, Shakespeare, T=256, batch 8
    python -m wavelab.bench wavgpt threads=1 json=wavgpt.json model.keep_ratio=0.125

Keys: conf/bench.yaml and conf/bench/wavgpt.yaml (``--help`` lists them). The model and data are
composed from the real conf/ (``model=wavgpt``: the packaged all-MiniLM-L6-v2, default
refinement, Shakespeare blocks from ``WordPieceDataModule``), and the optimizer is the module's
own ``configure_optimizers``. A bare loop runs the module's real training step
(``WavGPTModule._shared_step``, then backward, clipping and the optimizer step) and times each
stage where it runs, by wrapping the stage's method on the module for the duration:

    encoder   frozen encoder forward            refine     refiner forward
    dwt       lifting transform                 head_loss  the rest of the forward: student and
    filter    scores, top-k, masks                         teacher logits, loss, step metrics
    inverse   inverse lifting transform         step       backward, clipping, AdamW step

Filter and lifting also cost time in the backward pass, hidden in ``step``; ``lifting_backward``
times it separately, by a backward pass from the core's inverse transform (``h_hat``) alone,
and the table adds it to their share. Medians over the timed steps; other processes on the
machine add noise, which the load averages printed before and after help judge.

On a shared CPU, use ``threads=1``: when another process keeps a core busy, torch's second
thread turns every small elementwise op (all of lifting and the filter) into a wait of
milliseconds, about 100x their cost, and their share then measures the contention, not the code.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import lightning as L
import torch
from omegaconf import DictConfig

from wavelab.bench import check_settings, load_line, publish, settings_from
from wavelab.compose import compose
from wavelab.config import instantiate
from wavelab.lit.wavgpt import WavGPTModule

# The stages timed inside the real forward, and the method of the module each one runs.
STAGES = {
    "encoder": lambda module: (module.encoder, "hidden"),
    "dwt": lambda module: (module.core.dwt, "forward"),
    "filter": lambda module: (module.core.filter, "forward"),
    "inverse": lambda module: (module.core.dwt, "inverse"),
    "refine": lambda module: (module.core.refiner, "forward"),
}
SECTIONS = (*STAGES, "head_loss", "step")
LIFTING = ("dwt", "filter", "inverse")
TARGET_SHARE = 0.10  # filter + lifting should stay below this fraction of a training step


@dataclass
class Settings:
    steps: int = 3  # timed steps
    warmup: int = 1  # untimed steps first (allocator, lazy init)
    threads: int | None = None  # torch threads; None: torch's default
    overrides: tuple[str, ...] = ()  # extra Hydra overrides, applied last

    def validate(self) -> None:
        """Raises ConfigError naming the bench key for any value that cannot run."""
        check_settings(asdict(self))


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


@contextmanager
def timed_stages(module: WavGPTModule, clock: Clock):
    """While active, every call of a stage's method (``STAGES``) on ``module`` is timed under the
    stage's name: the wrapper sits on the instance and is removed on exit, so what runs is the
    module's own forward, not a copy of it."""
    wrapped = []
    try:
        for name, locate in STAGES.items():
            owner, method = locate(module)
            original = getattr(owner, method)

            def timed(*args, _original=original, _name=name, **kwargs):
                with clock(_name):
                    return _original(*args, **kwargs)

            setattr(owner, method, timed)
            wrapped.append((owner, method))
        yield
    finally:
        for owner, method in wrapped:
            delattr(owner, method)  # the class's method shows through again


def train_step(module: WavGPTModule, optimizer, clip: float | None, batch: dict, clock: Clock):
    """One real training step, its stages timed; returns the loss."""
    with timed_stages(module, clock), clock("forward"):
        loss = module._shared_step(batch, "train")
    with clock("step"):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(module.core.parameters(), clip)
        optimizer.step()
    return loss.detach()


def lifting_backward(module: WavGPTModule, batch: dict, clock: Clock) -> None:
    """Times the backward pass through inverse, filter and dwt alone: from the core's
    ``h_hat`` (before the refiner) with a random gradient, which is then discarded."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    h_hat = module.core(module.encoder.hidden(ids, mask), mask).h_hat
    grad = torch.randn_like(h_hat)
    with clock("lifting_backward"):
        h_hat.backward(grad)
    module.core.zero_grad(set_to_none=True)


def head_loss_seconds(seconds: dict[str, list[float]]) -> list[float]:
    """Per step: the forward's time outside the timed stages (logits, loss, metrics)."""
    inside = [sum(step) for step in zip(*(seconds[name] for name in STAGES))]
    return [forward - staged for forward, staged in zip(seconds["forward"], inside)]


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
        cfg = compose(["model=wavgpt", *settings.overrides], output_dir=output_dir)
        L.seed_everything(cfg.seed, verbose=False)
        data = instantiate(cfg.data)
        data.prepare_data()
        data.setup("fit")
        module = instantiate(cfg.model).to(device).train()
    optimizer = module.configure_optimizers()["optimizer"]
    clip = cfg.trainer.get("gradient_clip_val")
    clock = Clock(device)
    real_tokens, padded_tokens, losses = [], [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    memory_before = peak_memory_mb(device)
    batches = iter(data.train_dataloader())
    for i in range(settings.warmup + settings.steps):
        if i == settings.warmup:  # forget the warmup's timings
            clock.seconds.clear()
        batch = {k: v.to(device) for k, v in next(batches).items()}
        losses.append(float(train_step(module, optimizer, clip, batch, clock)))
        lifting_backward(module, batch, clock)
        real_tokens.append(int(batch["attention_mask"].sum()))
        padded_tokens.append(batch["attention_mask"].numel())
    memory_after = peak_memory_mb(device)
    load_after = os.getloadavg()

    clock.seconds["head_loss"] = head_loss_seconds(clock.seconds)
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
        "losses": losses[settings.warmup :],  # the timed steps' training losses
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


def main(cfg: DictConfig) -> None:
    """``python -m wavelab.bench wavgpt``: ``cfg`` is conf/bench.yaml with conf/bench/wavgpt.yaml."""
    result = run(settings_from(Settings, cfg))
    publish(result, format_table(result), cfg.json)
