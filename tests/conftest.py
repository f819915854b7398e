"""Shared fixtures: the real conf/ composed by Hydra, with small, fast overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from wavelab.config import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


def _find_tiny_shakespeare() -> Path | None:
    candidates = [
        os.environ.get("WAVELAB_TEST_CORPUS"),
        REPO.parent / "shared/data/tinyshakespeare.txt",
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@pytest.fixture(scope="session")
def tiny_shakespeare() -> Path:
    path = _find_tiny_shakespeare()
    if path is None:
        pytest.skip("Tiny Shakespeare not found: set WAVELAB_TEST_CORPUS or provide ../shared/data")
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One token cache for the whole session, so each corpus is tokenized once."""
    return tmp_path_factory.mktemp("cache")


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "config"
) -> DictConfig:
    """Composes the real conf/ like the CLI would, with the run dir set to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A tiny random BERT with its WordPiece tokenizer, saved like a real encoder directory."""
    from wavelab.models.encoder import save_tiny_encoder

    return save_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))


# Small, fast, CPU-only settings per model family; a test's own overrides come after and win.
TRAINER_SMALL = [
    "trainer.accelerator=cpu",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_model_summary=false",
    "model.scheduler.warmup_steps=2",
    "callbacks.progress_bar=null",
]
LM_SMALL = [
    "data=tinyshakespeare_char",
    "data.num_val_windows=48",
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
]


@pytest.fixture
def make_cfg(tmp_path, cache_dir, tiny_shakespeare, request):
    """Composes a small config on Tiny Shakespeare (``model=wavgpt`` uses the tiny encoder)."""

    def _make(
        *overrides: str, config_name: str = "config", run: str = "run", small: bool = True
    ) -> DictConfig:
        """``small=False`` keeps the model and data sizes of the config (e.g. of a preset)."""
        base = []
        if config_name != "sample":
            base += [f"paths.cache_dir={cache_dir}", f"paths.log_dir={tmp_path / 'logs'}"]
        if config_name == "config":
            base += [f"data.path={tiny_shakespeare}", *TRAINER_SMALL]
            if small and "model=wavgpt" in overrides:
                encoder = request.getfixturevalue("tiny_encoder_dir")
                base += [f"model.encoder.name_or_path={encoder}", *WAVGPT_SMALL]
            elif small:
                base += LM_SMALL
        return compose_config(base + list(overrides), tmp_path / run, config_name)

    yield _make
    GlobalHydra.instance().clear()
