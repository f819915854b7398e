"""Ctrl-C (SIGINT) stops a run as SIGTERM does: last.ckpt at the current step, "interrupted" in
metrics.json, exit 130, and a line saying how to resume; during validation too."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.tiny_runs import TINY_GPT, write_corpus

import wavelab.run
from wavelab.callbacks.health import SIGINT_EXIT
from wavelab.run import train

pytestmark = pytest.mark.usefixtures("single_thread")


def test_sigint_during_training_saves_records_and_exits_130(entry, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    args = [*TINY_GPT, f"data.path={corpus}", "trainer.max_steps=100000"]
    # Validations are rare, so the signal almost always lands in a training step; when it lands in
    # a validation, the run stops on the checkpoint it has (test_sigint_during_validation...).
    args += ["trainer.val_check_interval=25"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wavelab.run", *args],
        cwd=entry.cwd,
        env=entry.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runs = entry.cwd / "logs" / "train" / "runs"
    deadline = time.monotonic() + 180
    while not list(runs.glob("*/checkpoints/last.ckpt")):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == SIGINT_EXIT, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    (run,) = runs.iterdir()
    summary = json.loads((run / "metrics.json").read_text())
    step = summary["interrupted"]["step"]
    assert summary["interrupted"]["signal"] == "SIGINT"
    assert f"resume_dir={run}" in out, out[-2000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    if f"SIGINT during validation at step {step}:" in out:
        assert ckpt["global_step"] < step
    else:
        assert f"SIGINT at step {step}: saved" in out, out[-2000:]
        assert ckpt["global_step"] == step


class SigintInValidation(L.Callback):
    """Sends this process a real SIGINT after the first batch of the first real validation."""

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
        if not trainer.sanity_checking and batch_idx == 0:
            os.kill(os.getpid(), signal.SIGINT)


def test_sigint_during_validation_records_it_and_exits_130(make_cfg, monkeypatch, caplog):
    cfg = make_cfg(
        "model=gpt",
        "callbacks.samples=null",
        "trainer.val_check_interval=2",
        "data.num_val_windows=16",
    )
    build_trainer = wavelab.run.build_trainer

    def with_sigint(cfg):
        trainer = build_trainer(cfg)
        trainer.callbacks.append(SigintInValidation())
        return trainer

    monkeypatch.setattr(wavelab.run, "build_trainer", with_sigint)
    with caplog.at_level(logging.WARNING), pytest.raises(SystemExit) as stopped:
        train(cfg)
    assert stopped.value.code == SIGINT_EXIT
    run = Path(cfg.paths.output_dir)
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["interrupted"] == {"signal": "SIGINT", "step": 2}
    assert "SIGINT during validation at step 2" in caplog.text
    assert f"resume_dir={run}" in caplog.text
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
