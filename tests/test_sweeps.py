"""Multiruns through the real CLI: one dir, metrics.json and W&B run per job; reports; launchers;
Optuna."""

from __future__ import annotations

import importlib.util
import json
import struct

import pytest
import yaml

from wavelab.report import report

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


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory, train_cli):
    """A 3-job multirun logging to W&B (offline): the sweep dir."""
    tmp = tmp_path_factory.mktemp("sweep")
    train_cli(["-m", *FAST, "logger=wandb", "model.net.n_layer=1,2,3"], tmp)
    return job_dirs(tmp / "logs/train/multiruns")[0]


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
        assert run.run_group == f"train/{wandb_sweep.name}"  # grouped by sweep
        assert f"model.net.n_layer={n_layer}" in run.display_name  # named by its overrides
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
    out = report(
        wandb_sweep, metrics=["val/loss", "val/acc"], baseline="val/loss_best", out_dir=tmp_path
    )
    lines = out["markdown"].read_text().splitlines()
    assert lines[0] == "| job | model.net.n_layer | val/loss | val/acc | val/loss_best |"
    assert len(lines) == 2 + 3
    rows = out["csv"].read_text().splitlines()
    assert rows[0] == "job,model.net.n_layer,val/loss,val/acc,val/loss_best" and len(rows) == 4
    assert [r.split(",")[1] for r in rows[1:]] == ["1", "2", "3"]  # auto-detected swept key
    assert out["plot"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@needs_submitit
def test_submitit_local_launcher_runs_every_job(tmp_path, train_cli):
    train_cli(["-m", *FAST, "hydra/launcher=submitit_local", "model.net.n_layer=1,2"], tmp_path)
    sweep, jobs = job_dirs(tmp_path / "logs/train/multiruns")
    assert len(jobs) == 2 and all((j / "metrics.json").is_file() for j in jobs)
    assert (sweep / ".submitit").is_dir()


@pytest.mark.slow
@needs_optuna
def test_optuna_search_runs_trials_and_reports_the_best(tmp_path, train_cli):
    train_cli(
        [
            "hparams_search=gpt_optuna",
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


@pytest.mark.parametrize("launcher", ["slurm", "submitit_local", "joblib"])
def test_launcher_configs_compose(make_cfg, launcher):
    module = "joblib" if launcher == "joblib" else "submitit"
    if importlib.util.find_spec(f"hydra_plugins.hydra_{module}_launcher") is None:
        pytest.skip("needs the [sweeps] extra")
    cfg = make_cfg(f"hydra/launcher={launcher}")
    if launcher == "slurm":
        assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node == 1
        assert cfg.hydra.launcher.timeout_min == 240
