"""The command-line entries as a user meets them: --help, console scripts, the start and the end
of a real run, and a console without Lightning's and Hugging Face's noise."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from helpers.cli import REPO, Entry
from helpers.tiny_runs import TINY_GPT, tiny_gpt_run, write_corpus

ENTRIES = {
    "run": "wavelab-train",
    "eval": "wavelab-eval",
    "sample": "wavelab-sample",
    "export": "wavelab-export",
}
# Noise a run must not print: each says nothing about the run, or misleads.
NOISE = (
    "GPU available",
    "TPU available",
    "Total FLOPs",
    "module(s) in eval mode",
    "Loading weights",
    "v_num",
    "Epoch 0/-2",
    "💡 Tip",
)


def declared_scripts() -> dict[str, str]:
    """pyproject's [project.scripts] (tomllib is Python 3.11+; wavelab supports 3.10)."""
    table = (REPO / "pyproject.toml").read_text().split("[project.scripts]\n", 1)[1]
    table = table.split("\n[", 1)[0]
    pairs = (line.split(" = ") for line in table.splitlines() if " = " in line)
    return {name.strip(): target.strip().strip('"') for name, target in pairs}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "shakespeare.txt")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, corpus, cache_dir):
    """One real two-step GPT run with the default console (progress bar, summary, tree)."""
    entry = Entry(tmp_path_factory.mktemp("work"), cache_dir)
    overrides = [o for o in TINY_GPT if o != "callbacks.samples=null"]
    result = entry("run", *overrides, f"data.path={corpus}", "callbacks.samples.max_new_tokens=8")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (run_dir,) = (entry.cwd / "logs" / "train" / "runs").iterdir()
    return run_dir, result.stdout + result.stderr


@pytest.mark.parametrize("module", ["run", "eval", "sample", "export"])
def test_help_lists_the_keys_without_importing_lightning(module):
    """--help answers from the config alone: no Lightning, torch or transformers import."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['wavelab.{module}', '--help']\n"
        "try:\n"
        f"    runpy.run_module('wavelab.{module}', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = [m for m in ('lightning', 'torch', 'transformers') if m in sys.modules]\n"
        "print('heavy imports:', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "heavy imports: []" in result.stdout, result.stdout[-500:]
    assert "ckpt_path:" in result.stdout  # the config's keys are listed
    if module == "run":  # and the options of each config group
        assert "model: gpt, wavegpt" in result.stdout


def test_config_error_answers_before_lightning_is_imported(entry):
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['wavelab.run', 'model.optimizer.lr=0']\n"
        "try:\n"
        "    runpy.run_module('wavelab.run', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, [m for m in ('lightning', 'torch') if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=entry.cwd,
        env=entry.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "exit 2 []" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "model.optimizer.lr=0 is invalid" in result.stdout + result.stderr


def test_console_scripts_are_declared_and_their_targets_run():
    scripts = declared_scripts()
    for module, name in ENTRIES.items():
        assert scripts[name] == f"wavelab.{module}:main"
    assert {"wavelab-codec", "wavelab-plots", "wavelab-report", "wavelab-bench"} <= set(scripts)
    readme = (REPO / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in scripts), "README lists every command"
    # What the script pip generates does: import the target and call it with the user's argv.
    for name in ENTRIES.values():
        module, _, fn = scripts[name].partition(":")
        code = f"import sys; from {module} import {fn}; sys.argv = ['{name}', '--help']; {fn}()"
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0 and "ckpt_path" in result.stdout, result.stderr[-2000:]
    # An install of this checkout (pip install -e .) exposes exactly these commands.
    dist = metadata.distribution("wavelab")
    if Path(dist.locate_file("")).resolve() == REPO or REPO.as_posix() in (
        dist.read_text("direct_url.json") or ""
    ):
        installed = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
        for name, target in scripts.items():
            assert installed.get(name) == target, f"reinstall: pip install -e . ({name})"


def test_a_run_announces_its_dir_and_config_and_ends_with_a_summary(tiny_run):
    run_dir, console = tiny_run
    assert f"run dir: {run_dir}" in console
    assert "CONFIG" in console and "─ model" in console  # the rich tree
    tree = (run_dir / "config_tree.log").read_text()
    assert "LanguageModelModule" in tree and "max_steps: 2" in tree
    (final,) = [line for line in console.splitlines() if "final (step 2):" in line]
    assert "val/loss " in final and "val/bpc " in final
    assert any("best (step 2): val/loss" in line for line in console.splitlines())
    best = next(run_dir.glob("checkpoints/step*.ckpt"))
    assert f"best checkpoint: {best}" in console
    assert "wall time: " in console


def test_a_run_prints_no_noise(tiny_run):
    _, console = tiny_run
    assert "step 2/2" in console  # the progress bar counts steps
    for noise in NOISE:
        assert noise not in console, noise
    # Each line once: Lightning's own handler would print its lines a second time.
    assert console.count("`Trainer.fit` stopped") == 1


def test_print_config_switches_off(entry, corpus):
    run_dir, result = tiny_gpt_run(entry, corpus, "extras.print_config=false", "debug=fdr")
    assert "CONFIG" not in result.stdout + result.stderr
    assert not (run_dir / "config_tree.log").exists()


def test_fast_dev_run_writes_no_checkpoint_metrics_or_samples(entry, corpus):
    run_dir, result = tiny_gpt_run(entry, corpus, "debug=fdr")
    written = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert written <= {
        ".hydra/config.yaml",
        ".hydra/hydra.yaml",
        ".hydra/overrides.yaml",
        "run.log",
        "config_tree.log",
    }, written
    assert "final (step 1)" in result.stdout + result.stderr


def test_wavgpt_run_prints_no_noise(entry, corpus, tiny_encoder_dir):
    result = entry(
        "run",
        "model=wavgpt",
        f"model.encoder.name_or_path={tiny_encoder_dir}",
        f"data.path={corpus}",
        "data.block_size=32",
        "data.batch_size=2",
        "data.num_val_blocks=4",
        "model.refine_layers=1",
        "model.refine_heads=2",
        "trainer.accelerator=cpu",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.num_sanity_val_steps=0",
        "model.scheduler.warmup_steps=1",
        "extras.print_config=false",
    )
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    for noise in NOISE:
        assert noise not in console, noise
    assert "val/bits_per_token" in next(ln for ln in console.splitlines() if "final (step" in ln)
