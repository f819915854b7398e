"""Where a WavGPT training step spends its time, with and without the teacher cache.

    python -m wavelab.bench wavgpt                 # MiniLM, Shakespeare, T=256, batch 8
    python -m wavelab.bench wavgpt threads=1 json=wavgpt.json model.keep_ratio=0.125
    python -m wavelab.bench wavgpt compare=[cached]  # one path: its peak RSS alone

Two training paths run side by side, their steps interleaved so that load on the machine hits
both alike (``PATHS``): ``live`` runs the frozen encoder and the full-vocabulary teacher and KD
every step, as WavGPT trained before the teacher cache; ``cached`` reads the hidden states and
the teacher's top K from ``wavelab.wavgpt.data.teacher_cache`` (built first if missing) and uses
sparse KD.

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
times it separately, by a backward pass from the core's inverse transform (the decoded states) alone,
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
from wavelab.bench.machine import prepare
from wavelab.core.compose import compose
from wavelab.core.config import instantiate
from wavelab.core.errors import ConfigError
from wavelab.wavgpt.module import WavGPTModule

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


# The training paths the bench can compare, as overrides of the benchmarked config.
PATHS = {
    # the frozen encoder and the full-vocabulary teacher run every step (before the cache)
    "live": ("data.teacher_cache=false", "model.kd=full"),
    # hidden states and the teacher's top K come from the teacher cache; sparse KD
    "cached": ("data.teacher_cache=true", "model.kd=sparse"),
}


@dataclass
class Settings:
    steps: int = 3  # timed steps per path
    warmup: int = 1  # untimed steps first (allocator, lazy init)
    threads: int | None = None  # torch threads; None: torch's default
    compare: tuple[str, ...] = tuple(PATHS)  # the paths run side by side, steps interleaved
    overrides: tuple[str, ...] = ()  # extra Hydra overrides, applied last

    def validate(self) -> None:
        """Raises ConfigError naming the bench key for any value that cannot run."""
        check_settings(asdict(self))
        unknown = [p for p in self.compare if p not in PATHS]
        if unknown or not self.compare:
            raise ConfigError(
                f"compare={list(self.compare)} is invalid: name one or more of {list(PATHS)}"
            )


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
    decoded states (before the refiner) with a random gradient, which is then discarded."""
    unrefined = module.core(module.hidden_states(batch), batch["attention_mask"]).unrefined
    grad = torch.randn_like(unrefined)
    with clock("lifting_backward"):
        unrefined.backward(grad)
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


@dataclass
class TrainingPath:
    """One benchmarked training path: its data, module, optimizer and timings."""

    cfg: DictConfig
    module: WavGPTModule
    optimizer: torch.optim.Optimizer
    batches: object  # iterator over the path's training batches
    clock: Clock
    losses: list[float]
    real_tokens: list[int]
    padded_tokens: list[int]
    cache_bytes: int  # of its teacher cache on disk (0: none)


def build_path(name: str, settings: Settings, device: torch.device) -> TrainingPath:
    with tempfile.TemporaryDirectory() as output_dir:
        overrides = ["model=wavgpt", *PATHS[name], *settings.overrides]
        cfg = compose(overrides, output_dir=output_dir)
        L.seed_everything(cfg.seed, verbose=False)
        data = instantiate(cfg.data)
        data.prepare_data()
        data.setup("fit")
        module = instantiate(cfg.model).to(device).train()
    optimizer = module.configure_optimizers()["optimizer"]
    batches = iter(data.train_dataloader())
    cache_bytes = sum(a.nbytes for split in data.teacher_arrays.values() for a in split.values())
    return TrainingPath(cfg, module, optimizer, batches, Clock(device), [], [], [], cache_bytes)


def summarize(path: TrainingPath, steps: int) -> dict:
    seconds = path.clock.seconds
    for name in STAGES:  # a stage the path never runs (the cached path's encoder) costs 0
        seconds.setdefault(name, [0.0] * steps)
    seconds["head_loss"] = head_loss_seconds(seconds)
    ms = {name: 1000 * statistics.median(s) for name, s in seconds.items()}
    step_ms = sum(ms[s] for s in SECTIONS)
    lifting_ms = sum(ms[s] for s in LIFTING)
    step_s = [sum(seconds[s][i] for s in SECTIONS) for i in range(steps)]
    real, padded = path.real_tokens[-steps:], path.padded_tokens[-steps:]
    return {
        "ms": ms,
        "step_ms": step_ms,
        "losses": path.losses[-steps:],  # the timed steps' training losses
        "lifting_share_forward": lifting_ms / step_ms,
        "lifting_share": (lifting_ms + ms["lifting_backward"]) / step_ms,
        "tokens_per_s_padded": sum(padded) / sum(step_s),
        "tokens_per_s_real": sum(real) / sum(step_s),
        "real_fraction": sum(real) / sum(padded),
    }


def teacher_cache_mb(paths: dict[str, TrainingPath]) -> float | None:
    """Size on disk of the teacher cache the cached path reads (None without one)."""
    path = paths.get("cached")
    if path is None:
        return None
    return path.cache_bytes / 2**20


def run(settings: Settings) -> dict:
    load_before = prepare(settings)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    paths = {name: build_path(name, settings, device) for name in settings.compare}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    memory_before = peak_memory_mb(device)
    for i in range(settings.warmup + settings.steps):
        for path in paths.values():  # interleaved: a load spike hits every path alike
            if i == settings.warmup:  # forget the warmup's timings
                path.clock.seconds.clear()
            batch = {k: v.to(device) for k, v in next(path.batches).items()}
            loss = train_step(
                path.module,
                path.optimizer,
                path.cfg.trainer.get("gradient_clip_val"),
                batch,
                path.clock,
            )
            path.losses.append(float(loss))
            lifting_backward(path.module, batch, path.clock)
            path.real_tokens.append(int(batch["attention_mask"].sum()))
            path.padded_tokens.append(batch["attention_mask"].numel())
    memory_after = peak_memory_mb(device)
    first = next(iter(paths.values()))
    cfg, module = first.cfg, first.module
    return {
        "settings": asdict(settings),
        "config": {
            "encoder": cfg.model.encoder.name_or_path,
            "d": module.encoder.d,
            "block_size": cfg.data.block_size,
            "batch_size": cfg.data.batch_size,
            "keep_ratio": cfg.model.keep_ratio,
            "kd_top_k": cfg.model.kd_top_k,
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
            "loadavg_after": os.getloadavg(),
        },
        "paths": {name: summarize(path, settings.steps) for name, path in paths.items()},
        "teacher_cache_mb": teacher_cache_mb(paths),
        "peak_memory_mb": memory_after,
        "peak_memory_delta_mb": memory_after - memory_before,
        "memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS",
    }


def format_table(result: dict) -> str:
    c, e, s, paths = result["config"], result["env"], result["settings"], result["paths"]
    names = list(paths)
    lines = [
        f"WavGPT on {c['encoder']} (d={c['d']}): block_size={c['block_size']} "
        f"batch_size={c['batch_size']} keep_ratio={c['keep_ratio']} levels={c['levels']} "
        f"refine={c['refine']} ({c['refine_layers']} layers), K={c['kd_top_k']}, "
        f"corpus {c['corpus']}",
        f"{e['device']}, torch {e['torch']}, {e['threads']} threads on {e['cpu_count']} CPUs; "
        f"median of {s['steps']} steps after {s['warmup']} warmup, paths interleaved",
        load_line(e),
        "",
        f"{'section':<22}" + "".join(f"{name + ' ms':>14}{'share':>8}" for name in names),
    ]
    for section in (*SECTIONS, "lifting_backward"):
        row = f"{section:<22}"
        for name in names:
            ms, step = paths[name]["ms"][section], paths[name]["step_ms"]
            row += f"{ms:>14.1f}{100 * ms / step:>7.1f}%"
        note = "  (inside step, timed apart)" if section == "lifting_backward" else ""
        lines.append(row + note)
    lines.append(
        f"{'training step':<22}"
        + "".join(f"{paths[n]['step_ms']:>14.1f}{100.0:>7.1f}%" for n in names)
    )
    lines.append("")
    for name in names:
        p = paths[name]
        share = p["lifting_share"]
        verdict = "ok" if share < TARGET_SHARE else f"ABOVE the {TARGET_SHARE:.0%} target"
        lines += [
            f"{name}: {p['step_ms'] / 1000:.2f} s/step; {p['tokens_per_s_real']:,.0f} tokens/s "
            f"real ({p['real_fraction']:.0%} real); filter + lifting {share:.1%} of the step "
            f"with their backward ({verdict})",
        ]
    if len(names) == 2:
        a, b = (paths[n]["step_ms"] for n in names)
        lines.append(f"{names[1]} vs {names[0]}: {a / b:.2f}x faster per step")
    if result["teacher_cache_mb"] is not None:
        lines.append(f"teacher cache on disk: {result['teacher_cache_mb']:,.0f} MiB")
    lines.append(
        f"memory ({result['memory_kind']}, all paths together): peak "
        f"{result['peak_memory_mb']:,.0f} MiB, +{result['peak_memory_delta_mb']:,.0f} MiB "
        "during training"
    )
    return "\n".join(lines)


def main(cfg: DictConfig) -> None:
    """``python -m wavelab.bench wavgpt``: ``cfg`` is conf/bench.yaml with conf/bench/wavgpt.yaml."""
    result = run(settings_from(Settings, cfg))
    publish(result, format_table(result), cfg.json)
