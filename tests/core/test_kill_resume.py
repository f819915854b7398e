"""Killing a real training process at random moments, and resuming it, loses nothing.

One uninterrupted run is the reference. The same run is then SIGKILLed three times (once while a
checkpoint is being written) or SIGTERMed once, resumed with ``resume_dir=`` after each stop, and
must end with the reference's weights, its metrics.csv rows (each exactly once) and no stray temp
file. The kill delays come from a seeded generator, so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.run_files import assert_same_weights_and_rows

import wavelab.run
from wavelab.callbacks.health import SIGTERM_EXIT
from wavelab.run import train

REPO = Path(__file__).resolve().parents[2]
STEPS = 16
# A checkpoint at every validation (every 2 steps), so kills land before, after and during saves;
# the model is big enough (a few MB of weights, 3x that with AdamW's state) for a save to outlast
# the gaps between the poll's looks below, also on a loaded machine.
ARGS = [
    "model=gpt",
    "data.block_size=32",
    "data.batch_size=4",
    "data.num_val_windows=8",
    "model.net.n_layer=2",
    "model.net.n_embd=256",
    "model.net.n_head=2",
    "model.scheduler.warmup_steps=2",
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_model_summary=false",
    "callbacks.norms.every_n_steps=3",
    "callbacks.progress_bar=null",
    "callbacks.samples=null",
    "callbacks.throughput=null",  # wall-clock rates differ between any two runs
]


def start(args: list[str], log_dir: Path, corpus: Path, cache: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    }
    paths = [f"data.path={corpus}", f"paths.cache_dir={cache}", f"paths.log_dir={log_dir}"]
    return subprocess.Popen(
        [sys.executable, "-m", "wavelab.run", *ARGS, *paths, *args],
        cwd=log_dir.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, expect: int = 0) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == expect, f"exit {proc.returncode}, expected {expect}:\n{out[-3000:]}"
    return out


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120, poll: float = 0.01):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended early:\n{proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if ".tmp" in p.name]


def assert_same_run(run: Path, reference: Path) -> None:
    assert_same_weights_and_rows(run, reference)
    assert temp_files(run) == []
    final = json.loads((run / "metrics.json").read_text())
    assert final["final"] == json.loads((reference / "metrics.json").read_text())["final"]
    # save_top_k=1: one best checkpoint, plus last.ckpt
    assert len(list((run / "checkpoints").glob("*.ckpt"))) == 2


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus_file, cache_dir) -> Path:
    logs = tmp_path_factory.mktemp("reference") / "logs"
    finish(start([], logs, corpus_file, cache_dir))
    (run,) = (logs / "train" / "runs").iterdir()
    return run


def only_run(logs: Path) -> Path:
    (run,) = (logs / "train" / "runs").iterdir()
    return run


def saved_since(path: Path, t0: float):
    return lambda: path.is_file() and path.stat().st_mtime > t0


def kill_during_a_save(proc: subprocess.Popen, directory: Path, timeout: float = 120) -> None:
    """SIGKILLs ``proc`` while it writes a file in ``directory``. The process is stopped
    (SIGSTOP) at each look, so a save seen in progress is still in progress when the kill lands,
    however busy the machine."""
    temp_suffix = (
        f".tmp{proc.pid}"  # wavelab.core.atomic's temp name: this process's, not a leftover
    )
    deadline = time.monotonic() + timeout
    while True:
        os.kill(proc.pid, signal.SIGSTOP)
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), f"the run ended before a save was caught ({status})"
        if any(name.endswith(temp_suffix) for name in os.listdir(directory)):
            proc.kill()
            proc.wait()
            return
        os.kill(proc.pid, signal.SIGCONT)
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@pytest.mark.slow
def test_sigkills_at_random_moments_and_during_a_save_lose_nothing(
    reference, tmp_path, corpus_file, cache_dir
):
    rng = random.Random(10)
    logs = tmp_path / "logs"
    t0 = time.time()
    proc = start([], logs, corpus_file, cache_dir)
    wait_for(lambda: any(logs.glob("train/runs/*/checkpoints/last.ckpt")), proc)
    run = only_run(logs)
    ckpts = run / "checkpoints"
    for kill in ["at random", "during a save", "at random"]:
        if kill == "at random":  # a moment after this process saved its first checkpoint
            wait_for(saved_since(ckpts / "last.ckpt", t0), proc)
            time.sleep(rng.uniform(0.0, 0.5))
            assert proc.poll() is None, "the run ended before the kill at random"
            proc.kill()
            proc.wait()
        else:
            kill_during_a_save(proc, ckpts)
            assert temp_files(run)  # the kill did interrupt a save: its temp file is left
        t0 = time.time()
        proc = start([f"resume_dir={run}"], logs, corpus_file, cache_dir)
    finish(proc)
    assert_same_run(run, reference)


@pytest.mark.slow
def test_sigterm_saves_records_exits_143_and_resumes_exactly(
    reference, tmp_path, corpus_file, cache_dir
):
    rng = random.Random(15)
    logs = tmp_path / "logs"
    proc = start([], logs, corpus_file, cache_dir)
    wait_for(lambda: any(logs.glob("train/runs/*/checkpoints/last.ckpt")), proc)
    last = only_run(logs) / "checkpoints" / "last.ckpt"
    # Right after one of the first validations' saves, so the signal lands in a training step:
    # one followed by a validation would stop in it, and resume from that validation's save.
    for _ in range(rng.randint(0, 3)):
        before = last.stat().st_mtime_ns
        wait_for(lambda before=before: last.stat().st_mtime_ns != before, proc, poll=0.001)
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, expect=SIGTERM_EXIT)
    run = only_run(logs)
    summary = json.loads((run / "metrics.json").read_text())
    stopped_at = summary["interrupted"]["step"]
    assert summary["interrupted"]["signal"] == "SIGTERM"
    assert 0 < stopped_at < STEPS, out[-2000:]
    assert f"SIGTERM at step {stopped_at}: saved" in out, out[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] == stopped_at

    finish(start([f"resume_dir={run}"], logs, corpus_file, cache_dir))
    assert "interrupted" not in json.loads((run / "metrics.json").read_text())
    assert_same_run(run, reference)
    # Resuming the finished run trains nothing and keeps its final metrics.
    final = json.loads((run / "metrics.json").read_text())["final"]
    start([f"resume_dir={run}"], logs, corpus_file, cache_dir).communicate(timeout=300)
    assert json.loads((run / "metrics.json").read_text())["final"] == final


class SigtermAfterStep(L.Callback):
    """Sends this process a real SIGTERM at the end of one chosen training step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("step", [2, 3], ids=["then-validation", "mid-interval"])
def test_sigterm_resumes_with_every_row_at_its_step(make_cfg, monkeypatch, step):
    """The signal lands exactly in a step that ends with a validation (2) or one that does not
    (3); Lightning resumes the two differently, and both must log what one run logs."""
    args = ("model=gpt", "callbacks.samples=null", "callbacks.throughput=null")
    # one validation batch: a SIGTERM stops a validation only between its batches
    args += (
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
        "data.num_val_windows=4",
    )
    reference = make_cfg(*args, run="reference")
    train(reference)

    build_trainer = wavelab.run.build_trainer

    def build_trainer_that_gets_a_sigterm(cfg):
        trainer = build_trainer(cfg)
        trainer.callbacks.append(SigtermAfterStep(step))
        return trainer

    cfg = make_cfg(*args)
    with monkeypatch.context() as patch:
        patch.setattr(wavelab.run, "build_trainer", build_trainer_that_gets_a_sigterm)
        with pytest.raises(SystemExit) as stopped:
            train(cfg)
    assert stopped.value.code == SIGTERM_EXIT
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == step
    train(make_cfg(*args, f"ckpt_path={last}"))
    assert_same_run(Path(cfg.paths.output_dir), Path(reference.paths.output_dir))
