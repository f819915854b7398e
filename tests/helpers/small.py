"""Small, fast settings for the real conf/, shared by the fixtures and the tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from wavelab.core.compose import compose

# About Tiny Shakespeare's size (1,115,394 characters), so the tests' timings stay those of it.
TEST_CORPUS_CHARS = 1_100_000


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "config"
) -> DictConfig:
    """Composes the real conf/ like the CLI would, with the run dir set to ``output_dir``."""
    return compose(overrides, config_name, output_dir)


# Small, fast settings per model family; a test's own overrides come after and win.
TRAINER_SMALL = [
    "trainer.num_sanity_val_steps=0",
    "callbacks.model_summary=null",
    "model.scheduler.warmup_steps=2",
    "callbacks.progress_bar=null",
]
LM_SMALL = [
    "data=tinyshakespeare_char",
    "data.num_val_windows=48",  # a multiple of DDP's world size: no window dropped or repeated
    "data.block_size=32",
    "data.batch_size=4",
    "model.net.n_layer=2",
    "model.net.n_embd=32",
    "model.net.n_head=2",
]
WAVGPT_SMALL = [
    "data.block_size=32",
    "data.batch_size=4",
    "data.num_val_blocks=8",
    "model.refine_layers=1",
    "model.refine_heads=2",
    "model.kd_top_k=8",  # a small teacher cache
]


def tiny_wavgpt_run(encoder_dir: Path, corpus: Path) -> list[str]:
    """A WavGPT run of the real entry point small enough for a fixture: the tiny encoder on
    ``corpus``, live teacher, 4 steps, validated at the last."""
    return [
        "model=wavgpt",
        f"model.encoder.name_or_path={encoder_dir}",
        *WAVGPT_SMALL,
        f"data.path={corpus}",
        "data.teacher_cache=false",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        "model.scheduler.warmup_steps=1",
    ]
