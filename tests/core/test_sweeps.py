"""Multiruns through the real CLI: one dir, metrics.json and W&B run per job; reports; launchers;
Optuna."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
from pathlib import Path

import pytest
import yaml
from helpers.cli import assert_clean_error

from wavelab.reporting.sweep import ReportSettings, report

needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="needs the [sweeps] extra",
)
needs_optuna = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="needs the [sweeps] extra",
)
FAST = [
    "model=gpt",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
]


def job_dirs(sweep_root):
    (sweep,) = sweep_root.iterdir()
    return sweep, sorted(p for p in sweep.iterdir() if p.name.isdigit())


needs_joblib = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="needs the [sweeps] extra",
)
# What quiet_lightning() silences; worker processes must not print it either.
SILENCED = ("💡 Tip", "LeafSpec")


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory, train_cli):
    """A 3-job multirun logging to W&B (offline): the sweep dir."""
    tmp = tmp_path_factory.mktemp("sweep")
    train_cli(["-m", *FAST, "logger=wandb", "model.net.n_layer=1,2,3"], tmp)
    return job_dirs(tmp / "logs/train/multiruns")[0]


def wandb_run(job_dir):
    """The ``run`` record of a job's offline W&B run."""
    (run_file,) = job_dir.glob("wandb/offline-run-*/*.wandb")
    return next(r.run for t, r in wandb_records(run_file) if t == "run")


def wandb_records(path):
    """(type, record) of every record in an offline ``.wandb`` file.

    The file is wandb's LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each
    with a 7-byte header (crc32 4, length 2, type 1: full, first, middle or last) and a
    protobuf ``Record`` in (possibly split over) their payloads.
    """
    from wandb.proto import wandb_internal_pb2

    data, pos, block, pending = path.read_bytes(), 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little left in this block for a header: padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full or last: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record.WhichOneof("record_type"), record


@pytest.mark.slow
def test_multirun_jobs_have_their_own_dirs_and_summaries(wandb_sweep):
    jobs = sorted(p for p in wandb_sweep.iterdir() if p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2"]
    for n_layer, job in enumerate(jobs, start=1):
        summary = json.loads((job / "metrics.json").read_text())
        assert f"model.net.n_layer={n_layer}" in summary["overrides"]
        assert (
            summary["global_step"] == 4
            and summary["best"]["val/loss"] <= summary["final"]["val/loss"]
        )


@pytest.mark.slow
def test_each_job_is_its_own_finished_wandb_run(wandb_sweep):
    ids = set()
    for n_layer, job in enumerate(sorted(p for p in wandb_sweep.iterdir() if p.name.isdigit()), 1):
        (run_file,) = job.glob("wandb/offline-run-*/*.wandb")
        records = list(wandb_records(run_file))
        run = next(r.run for t, r in records if t == "run")
        ids.add(run.run_id)
        assert run.run_group == f"train/{wandb_sweep.name}"  # the task and the sweep's time
        assert run.display_name == f"n_layer={n_layer}"  # the swept key alone, not every override
        config = {
            i.key: json.loads(i.value_json)
            for t, r in records
            if t == "config"
            for i in r.config.update
        }
        assert config["model"]["net"]["n_layer"] == n_layer  # the resolved Hydra config
        history = [
            # wandb stores keys with slashes as nested keys
            {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for t, r in records
            if t == "history"
        ]
        assert any("val/loss" in h for h in history) and any(
            "train/grad_norm" in h for h in history
        )
        exits = [r.exit.exit_code for t, r in records if t == "exit"]
        assert exits == [0]  # wandb.finish() ran at the end of the job
    assert len(ids) == 3


@pytest.mark.slow
def test_report_tables_and_plots_a_sweep(wandb_sweep, tmp_path):
    settings = ReportSettings(
        metrics=["val/loss", "val/acc"], baseline="val/loss_best", out_dir=tmp_path
    )
    out = report(wandb_sweep, settings)
    lines = out["markdown"].read_text().splitlines()
    assert lines[0] == "| job | model.net.n_layer | val/loss | val/acc | val/loss_best |"
    assert len(lines) == 2 + 3
    rows = out["csv"].read_text().splitlines()
    assert rows[0] == "job,model.net.n_layer,val/loss,val/acc,val/loss_best" and len(rows) == 4
    assert [r.split(",")[1] for r in rows[1:]] == ["1", "2", "3"]  # auto-detected swept key
    assert out["plot"].read_bytes()[:4] == b"\x89PNG"


def assert_jobs_ran(tmp_path, n_jobs: int):
    """Every job of the sweep under tmp_path trained to the end and logged into its own dir."""
    sweep, jobs = job_dirs(tmp_path / "logs/train/multiruns")
    assert len(jobs) == n_jobs
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["global_step"] == 4
        assert "model: " in (job / "run.log").read_text()  # the job's console log, in its dir
    return sweep


@pytest.mark.slow
@needs_submitit
def test_local_launcher_runs_every_job_in_its_own_process(tmp_path, train_cli):
    train_cli(["-m", *FAST, "hydra/launcher=local", "model.net.n_layer=1,2"], tmp_path)
    sweep = assert_jobs_ran(tmp_path, 2)
    errs = list((sweep / ".submitit").glob("*_0_log.err"))  # one flat folder, by job id
    assert len(errs) == 2
    assert not [p for p in tmp_path.rglob("*%j*")]  # no dir named after an unfilled %j
    for err in errs:  # the worker silenced what __main__ silences in a single run
        assert not [s for s in SILENCED if s in err.read_text()], err.read_text()[-2000:]


@pytest.mark.slow
@needs_joblib
def test_joblib_launcher_runs_jobs_in_parallel_workers(tmp_path, train_cli):
    result = train_cli(
        ["-m", *FAST, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.net.n_layer=1,2"],
        tmp_path,
    )
    assert_jobs_ran(tmp_path, 2)
    out = result.stdout + result.stderr
    assert not [s for s in SILENCED if s in out], out[-3000:]


@needs_submitit
def test_slurm_launcher_without_slurm_is_one_clear_line(entry, corpus_file):
    # SLURM made absent here: PATH without the dirs that hold its commands, if this machine has any
    tools = ("srun", "sbatch", "sinfo", "scontrol")
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    path = os.pathsep.join(d for d in dirs if not any((Path(d) / t).exists() for t in tools))
    result = entry(
        "run", "-m", "hydra/launcher=slurm", f"data.path={corpus_file}", "seed=1,2", PATH=path
    )
    assert_clean_error(result, "hydra/launcher=slurm", "srun")
    assert not (entry.cwd / "logs").exists()  # refused before the sweep dir was made


@pytest.mark.slow
@needs_optuna
def test_optuna_search_runs_trials_and_reports_the_best(tmp_path, train_cli):
    result = train_cli(
        [
            "hparams_search=gpt_optuna",
            "logger=wandb",
            "hydra.sweeper.n_trials=2",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
        ],
        tmp_path,
    )
    sweep, jobs = job_dirs(tmp_path / "logs/train/multiruns")
    assert len(jobs) == 2
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    # The command line's tiny n_layer and n_embd fix those; Optuna searched the lr.
    assert set(best["best_params"]) == {"model.optimizer.lr"}
    trials = [json.loads((j / "metrics.json").read_text())["final"]["val/loss_best"] for j in jobs]
    assert best["best_value"] == pytest.approx(min(trials))
    for job in jobs:  # named by the one key Optuna searched, grouped by the search and its time
        lr = yaml.safe_load((job / ".hydra/config.yaml").read_text())["model"]["optimizer"]["lr"]
        run = wandb_run(job)
        assert run.display_name == f"lr={lr:.3g}"
        assert run.run_group == f"train/gpt_optuna/{sweep.name}"
    assert "alembic" not in result.stdout + result.stderr


@needs_submitit
def test_slurm_launcher_config_composes(make_cfg):
    cfg = make_cfg("hydra/launcher=slurm")
    assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node == 1
    assert cfg.hydra.launcher.timeout_min == 240
