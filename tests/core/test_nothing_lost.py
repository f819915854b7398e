"""A run dir keeps everything a run wrote, once, and nothing it should not have kept.

Resuming continues metrics.csv and metrics.json, cleans what an interrupted process left behind,
same-second starts get their own dirs, a diverged run stops without saving NaN weights, norms are
logged once, and a damaged token cache is rebuilt.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers.small import LM_SMALL

from wavelab.core.config import instantiate
from wavelab.core.errors import DIVERGED_EXIT
from wavelab.core.loggers import ResumableCSVLogger
from wavelab.run import train

REPO = Path(__file__).resolve().parents[2]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_csv_logger_continues_the_file_and_drops_rows_after_the_checkpoint(tmp_path):
    metrics = tmp_path / "csv" / "metrics.csv"
    metrics.parent.mkdir()
    # Rows at steps 0..3, then a row a killed process left half-written.
    metrics.write_text("a,step\n1.0,0\n1.1,1\n1.2,2\n1.3,3\n1.4,")
    logger = ResumableCSVLogger(tmp_path, name="csv", version="")
    logger.experiment.keep_steps_before(2)  # resumed from a checkpoint at global step 2
    logger.log_metrics({"a": 2.2, "b": 7.0}, step=2)  # a new key widens the header
    logger.save()
    fieldnames, rows = read_csv(metrics)
    assert fieldnames == ["a", "b", "step"]
    assert [(r["step"], r["a"], r["b"]) for r in rows] == [
        ("0", "1.0", ""),
        ("1", "1.1", ""),
        ("2", "2.2", "7.0"),
    ]


def test_resume_in_place_continues_metrics_and_cleans_the_checkpoint_dir(make_cfg, tmp_path):
    common = ["model=gpt", "trainer.log_every_n_steps=1", "trainer.val_check_interval=2"]
    train(make_cfg(*common, "trainer.max_steps=4"))
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    (best,) = (p for p in ckpts.glob("step*.ckpt"))
    # What kills leave behind: a second "best" saved after last.ckpt, a temp file of a save.
    shutil.copy(best, ckpts / "step0000099-val_loss0.0001.ckpt")
    stale_tmp = ckpts / f".last.ckpt.tmp{dead_pid()}"
    stale_tmp.write_bytes(b"half a checkpoint")
    live_tmp = ckpts / f".other.ckpt.tmp{os.getpid()}"  # a writer that is still running
    live_tmp.write_bytes(b"")
    rows_before = read_csv(run / "csv" / "metrics.csv")[1]

    last = str(ckpts / "last.ckpt")
    train(make_cfg(*common, "trainer.max_steps=6", f"ckpt_path={last}"))
    assert not stale_tmp.exists() and live_tmp.exists()
    live_tmp.unlink()
    kept = sorted(p.name for p in ckpts.glob("*.ckpt"))
    assert len(kept) == 2 and "last.ckpt" in kept and "step0000099-val_loss0.0001.ckpt" not in kept
    rows = read_csv(run / "csv" / "metrics.csv")[1]
    assert rows[: len(rows_before)] == rows_before
    steps = {int(r["step"]) for r in rows if r.get("train/loss")}
    assert steps == set(range(6))  # every step's row once: none lost, none repeated
    assert len([r for r in rows if r.get("train/loss")]) == 6

    # (A resume_dir of a finished run keeps its final metrics: test_kill_resume checks it.)


def test_norms_are_logged_once_at_the_step_they_were_measured(make_cfg, tmp_path):
    train(
        make_cfg(
            "model=gpt",
            "trainer.max_steps=8",
            "trainer.log_every_n_steps=1",
            "callbacks.norms.every_n_steps=3",
        )
    )
    _, rows = read_csv(tmp_path / "run" / "csv" / "metrics.csv")
    for key in ("train/grad_norm", "train/param_norm"):
        logged = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        assert [step for step, _ in logged] == [0, 3, 6], key
        assert len({value for _, value in logged}) == 3, key


def test_same_second_starts_get_their_own_run_dirs(tmp_path, corpus_file, cache_dir):
    """Two real runs, started together, ask for the same dir name: each gets one of its own."""
    base = tmp_path / "logs" / "same-second"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wavelab.run",
                "debug=fdr",
                "model=gpt",
                f"seed={seed}",
                f"data.path={corpus_file}",
                f"paths.cache_dir={cache_dir}",
                f"paths.log_dir={tmp_path / 'logs'}",
                "callbacks.progress_bar=null",
                f"hydra.run.dir=${{unique_dir:{base}}}",  # what conf/hydra does, minus the time
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, out[-3000:]
    dirs = sorted(p.name for p in base.parent.iterdir())
    assert dirs == ["same-second", "same-second_1"]
    seeds = {
        yaml.safe_load((base.parent / d / ".hydra/config.yaml").read_text())["seed"] for d in dirs
    }
    assert seeds == {1, 2}


def test_default_run_and_sweep_dirs_are_claimed_exclusively(make_cfg):
    cfg = make_cfg()
    for key in ("run", "sweep"):
        assert str(cfg.hydra[key]._get_node("dir")._value()).startswith("${unique_dir:"), key


# A small GPT that diverges at model.optimizer.lr=300: its loss is finite for a few steps, then it
# overflows.
DIVERGING_GPT = (
    "model=gpt",
    "model.scheduler.warmup_steps=0",
    "model.scheduler.min_lr=0",
    "trainer.max_steps=40",
    "trainer.num_sanity_val_steps=0",
    "callbacks.progress_bar=null",
)


@pytest.mark.parametrize("every", [1, 3])
def test_nan_loss_stops_with_exit_3_and_leaves_only_finite_checkpoints(entry, corpus_file, every):
    """Also when FiniteGuard reads the loss only every few steps, to spare the device waits."""
    result = entry(
        "run",
        *LM_SMALL,
        f"data.path={corpus_file}",
        *DIVERGING_GPT,
        "model.optimizer.lr=300",
        "trainer.val_check_interval=2",
        f"callbacks.finite_guard.check_every_n_steps={every}",
    )
    out = result.stdout + result.stderr
    assert result.returncode == DIVERGED_EXIT, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    (line,) = [line for line in out.splitlines() if "error" in line.lower()]
    assert "diverged" in line and "at step" in line and "model.optimizer.lr" in line, line
    (run,) = (entry.cwd / "logs" / "train" / "runs").iterdir()
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["diverged"]["step"] > 0
    assert math.isfinite(summary["best"]["val/loss"])
    ckpts = list((run / "checkpoints").glob("*.ckpt"))
    assert ckpts, "the run had good checkpoints before it diverged"
    for path in ckpts:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values()), path


def test_a_diverged_job_of_a_sweep_fails_the_sweep_in_one_line_after_its_batch(entry, corpus_file):
    result = entry(
        "run",
        "-m",
        *LM_SMALL,
        f"data.path={corpus_file}",
        *DIVERGING_GPT,
        "model.optimizer.lr=300,1e-3",  # the first job diverges, the second trains
        "trainer.val_check_interval=20",
    )
    out = result.stdout + result.stderr
    assert result.returncode == DIVERGED_EXIT, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    (failed,) = [line for line in out.splitlines() if "Error executing job" in line]
    assert "'model.optimizer.lr=300'" in failed, failed  # Hydra names the job
    assert "error: a job of this sweep diverged" in result.stdout.splitlines()[-1], out[-3000:]
    (sweep,) = (entry.cwd / "logs" / "train" / "multiruns").iterdir()
    summaries = [json.loads((sweep / job / "metrics.json").read_text()) for job in ("0", "1")]
    assert summaries[0]["diverged"]["step"] > 0 and "diverged" not in summaries[1]
    assert summaries[1]["global_step"] == 40


def test_a_truncated_token_cache_is_rebuilt(make_cfg, tmp_path, caplog):
    cfg = make_cfg("model=gpt", f"paths.cache_dir={tmp_path / 'cache'}")
    data = instantiate(cfg.data)
    data.setup("fit")
    n_train = len(data.splits["train"])
    (train_bin,) = (tmp_path / "cache").rglob("train.bin")
    full = train_bin.read_bytes()
    train_bin.write_bytes(full[: len(full) // 2])

    data = instantiate(cfg.data)
    with caplog.at_level(logging.WARNING, logger="wavelab.data.cache"):
        data.setup("fit")
    assert "train.bin" in caplog.text and "rebuilding" in caplog.text
    assert len(data.splits["train"]) == n_train
    assert train_bin.read_bytes() == full
