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
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from tiny_encoder import save_tiny_encoder

from wavelab.compose import compose
from wavelab.data.corpora import shakespeare_complete_works

REPO = Path(__file__).resolve().parents[1]
# About Tiny Shakespeare's size (1,115,394 characters), so the tests' timings stay those of it.
TEST_CORPUS_CHARS = 1_100_000


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


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "config"
) -> DictConfig:
    """Composes the real conf/ like the CLI would, with the run dir set to ``output_dir``."""
    return compose(overrides, config_name, output_dir)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A tiny random BERT with its WordPiece tokenizer, saved like a real encoder directory."""
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))


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
            # tests/test_teacher_cache.py covers the cache; presets are checked without it.
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
    says ``error:`` and names each of ``names`` (the key or file, the bad value). Returns it."""
    out = result.stdout + result.stderr
    assert result.returncode == 2, f"exit {result.returncode}, expected 2:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if "error:" in line.lower()]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{out[-3000:]}"
    for name in names:
        assert name in lines[0], f"{name!r} not in the error line: {lines[0]}"
    return lines[0]


@pytest.fixture
def entry(tmp_path, cache_dir) -> Entry:
    work = tmp_path / "work"
    work.mkdir()
    return Entry(work, cache_dir)
