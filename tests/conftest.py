"""Shared fixtures: a corpus, the tiny encoder, the real conf/ composed by Hydra with small, fast
overrides, and the command-line entries run as a user runs them.

Markers (pyproject): ``slow`` for tests the quick subset (``-m "not slow"``) leaves out, ``gpu``
for tests that need CUDA, skipped with the reason "needs a GPU" on machines without one, ``slurm``
for tests that submit to a real SLURM cluster, skipped with the reason "needs SLURM" where
``sinfo`` does not answer (``scripts/slurm-local.sh start`` starts a cluster on this machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers.cli import Entry
from helpers.small import LM_SMALL, TEST_CORPUS_CHARS, TRAINER_SMALL, WAVGPT_SMALL, compose_config
from helpers.tiny_encoder import save_tiny_encoder
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from wavelab.data.corpora import shakespeare_complete_works


def slurm_answers() -> bool:
    """Whether a SLURM controller answers ``sinfo`` here (scripts/slurm-local.sh starts one)."""
    import shutil
    import subprocess

    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def pytest_collection_modifyitems(config, items):
    if any("slurm" in item.keywords for item in items) and not slurm_answers():
        no_slurm = pytest.mark.skip(reason="needs SLURM: sinfo does not answer here")
        for item in items:
            if "slurm" in item.keywords:
                item.add_marker(no_slurm)
    if torch.cuda.is_available():
        return
    no_gpu = pytest.mark.skip(reason="needs a GPU: torch.cuda.is_available() is False")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(no_gpu)


@pytest.fixture
def single_thread():
    """Runs a test on one thread: for tiny matmuls threads only cost, and when the other cores
    are busy they cost ~100x. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    """The text file the tests train on: the first TEST_CORPUS_CHARS characters of the complete
    works that the setup installs (package ``shakespeare``), or ``$WAVELAB_TEST_CORPUS``."""
    override = os.environ.get("WAVELAB_TEST_CORPUS")
    if override:
        if not Path(override).is_file():
            pytest.fail(f"WAVELAB_TEST_CORPUS={override!r} is not a file")
        return Path(override)
    path = tmp_path_factory.mktemp("corpus") / "shakespeare_head.txt"
    path.write_text(shakespeare_complete_works()[:TEST_CORPUS_CHARS], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One token cache for the whole session, so each corpus is tokenized once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A tiny random BERT with its WordPiece tokenizer, saved like a real encoder directory."""
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))


def small_overrides(overrides, request) -> list[str]:
    """LM_SMALL, or WAVGPT_SMALL and the tiny encoder when ``overrides`` pick ``model=wavgpt``."""
    if "model=wavgpt" in overrides:
        encoder = request.getfixturevalue("tiny_encoder_dir")
        return [f"model.encoder.name_or_path={encoder}", *WAVGPT_SMALL]
    return LM_SMALL


@pytest.fixture
def make_cfg(tmp_path, cache_dir, corpus_file, request):
    """Composes a small CPU config on the test corpus (``model=wavgpt`` uses the tiny encoder)
    that stops after 6 steps and validates every 3."""

    def _make(
        *overrides: str, config_name: str = "config", run: str = "run", small: bool = True
    ) -> DictConfig:
        """``small=False`` keeps the model and data sizes of the config (e.g. of a preset)."""
        base = []
        if config_name != "sample":
            base += [f"paths.cache_dir={cache_dir}", f"paths.log_dir={tmp_path / 'logs'}"]
        if config_name == "config":
            base += [f"data.path={corpus_file}", "trainer.accelerator=cpu", *TRAINER_SMALL]
            base += ["trainer.max_steps=6", "trainer.val_check_interval=3"]
            if small:
                base += small_overrides(overrides, request)
        cfg = compose_config(base + list(overrides), tmp_path / run, config_name)
        if not small and cfg.get("data", {}).get("teacher_cache"):
            # A preset's teacher cache runs the real encoder over the whole test corpus: minutes.
            # tests/wavgpt/data/test_teacher_cache.py covers the cache; presets are checked without it.
            cfg.data.teacher_cache = False
        return cfg

    yield _make
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def train_cli(corpus_file, cache_dir, request):
    """``train_cli(args, cwd)`` runs ``python -m wavelab.run <args>`` in ``cwd`` with the small
    settings of ``make_cfg`` (runs go to ``cwd/logs``), asserts that it succeeded and returns the
    finished process. Steps, validation and the accelerator are left to ``args``."""

    def _run(args: list[str], cwd: Path, timeout: float = 240):
        flags = [a for a in args if a.startswith("-")]  # Hydra wants -m before the overrides
        small = [*TRAINER_SMALL, *small_overrides(args, request)]
        if "model=wavgpt" in args:
            small += ["callbacks.plots=null", "callbacks.reconstructions=null"]
        else:
            small += ["callbacks.samples=null"]
        result = Entry(cwd, cache_dir)(
            "run",
            *flags,
            f"data.path={corpus_file}",
            *small,
            *(a for a in args if a not in flags),
            timeout=timeout,
            WANDB_SILENT="true",
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    return _run


@pytest.fixture
def entry(tmp_path, cache_dir) -> Entry:
    work = tmp_path / "work"
    work.mkdir()
    return Entry(work, cache_dir)
