"""Shared fixtures: the real conf/ composed by Hydra, with small, fast overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from wavelab.compose import compose

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
    return compose(overrides, config_name, output_dir)


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


# --- command-line entries as a user runs them ----------------------------------------------


class Entry:
    """Runs ``python -m wavelab.<entry> ...`` in a scratch working dir, as a user would.

    The subprocess imports *this* checkout's wavelab (PYTHONPATH), logs under ``<cwd>/logs`` and
    caches under ``<cwd>/cache``, so a test can see every file an entry writes.
    """

    def __init__(self, cwd: Path, cache_dir: Path):
        self.cwd = cwd
        self.cache_dir = cache_dir

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            WAVELAB_LOG_DIR=str(self.cwd / "logs"),
            WAVELAB_CACHE_DIR=str(self.cache_dir),
            WANDB_MODE="offline",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def __call__(self, entry: str, *args: str, timeout: float = 300, **env: str):
        import subprocess
        import sys

        return subprocess.run(
            [sys.executable, "-m", f"wavelab.{entry}", *args],
            cwd=self.cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def files(self) -> set[Path]:
        """Every file under the working dir and the cache, for before/after comparisons."""
        roots = (self.cwd, self.cache_dir)
        return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def assert_clean_error(result, *names: str) -> str:
    """A user error as wavelab promises it: exit code 2, no traceback, exactly one line that
    says ``error`` and names each of ``names`` (the key or file, the bad value). Returns it."""
    out = result.stdout + result.stderr
    assert result.returncode == 2, f"exit {result.returncode}, expected 2:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if "error" in line.lower()]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{out[-3000:]}"
    for name in names:
        assert name in lines[0], f"{name!r} not in the error line: {lines[0]}"
    return lines[0]


@pytest.fixture
def entry(tmp_path, cache_dir) -> Entry:
    work = tmp_path / "work"
    work.mkdir()
    return Entry(work, cache_dir)
