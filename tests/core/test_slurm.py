"""wavelab's cluster path on a real SLURM cluster (``scripts/slurm-local.sh start``): sweeps as job
arrays, DDP ranks started by SLURM, requeue on preemption, failing jobs, refused submissions and
a job across two nodes, through ``python -m wavelab.run -m hydra/launcher=slurm_cpu`` and the
real conf/. Skipped with the reason "needs SLURM" where ``sinfo`` does not answer; ``.ci/run``
starts a two-node cluster and fails if any of them is skipped.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.cli import assert_clean_error
from helpers.run_files import assert_same_weights_and_rows, csv_rows
from helpers.small import LM_SMALL, TRAINER_SMALL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.slurm,
    pytest.mark.skipif(
        __import__("importlib").util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
        reason="needs hydra-submitit-launcher (pip install -e '.[sweeps]')",
    ),
]

# Seconds-per-job settings: a one-layer GPT, 6 steps, a validation every 3.
FAST = [
    *TRAINER_SMALL,
    *LM_SMALL,
    "model.net.n_layer=1",
    "callbacks.samples=null",
    "trainer.accelerator=cpu",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
]
SLURM = ["-m", "hydra/launcher=slurm_cpu"]


def run(entry, corpus_file, *args: str, timeout: float = 300, **env: str):
    flags = [a for a in args if a.startswith("-")]
    rest = [a for a in args if not a.startswith("-")]
    return entry("run", *flags, f"data.path={corpus_file}", *FAST, *rest, timeout=timeout, **env)


def ok(result) -> str:
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    return out


def sweep_dir(entry) -> Path:
    (sweep,) = (entry.cwd / "logs/train/multiruns").iterdir()
    return sweep


def slurm_jobs(sweep: Path) -> dict[str, dict[str, str]]:
    """``scontrol show job`` of every SLURM job the sweep submitted, by job id (``<array>_<i>``);
    the local cluster keeps finished jobs for an hour (MinJobAge)."""
    names = [p.name for p in (sweep / ".submitit").iterdir()]
    arrays = {name.split("_")[0] for name in names if re.fullmatch(r"\d+(_\d+)?", name)}
    jobs = {}
    for array in arrays:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", array], capture_output=True, text=True, check=True
        ).stdout
        for line in out.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            task = fields.get("ArrayTaskId")
            jobs[f"{fields['ArrayJobId']}_{task}" if task else fields["JobId"]] = fields
    return jobs


def final(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["final"]


def steps(run_dir: Path) -> int:
    return json.loads((run_dir / "metrics.json").read_text())["global_step"]


def test_a_sweep_is_a_job_array_and_reports(entry, corpus_file):
    out = ok(run(entry, corpus_file, *SLURM, "model.net.n_embd=16,24,32"))
    sweep = sweep_dir(entry)
    jobs = slurm_jobs(sweep)
    assert len(jobs) == 3, jobs.keys()  # one SLURM job per sweep job, all of one array
    assert len({j["ArrayJobId"] for j in jobs.values()}) == 1
    assert {j["JobState"] for j in jobs.values()} == {"COMPLETED"}
    for num in range(3):
        job_dir = sweep / str(num)
        assert (job_dir / "run.log").is_file() and (job_dir / "metrics.json").is_file()
        assert steps(job_dir) == 6
    assert "SLURM job" in out
    table = entry("report", f"sweep_dir={sweep}")
    assert table.returncode == 0, table.stderr[-3000:]
    report_md = (sweep / "report" / "report.md").read_text()
    for width in (16, 24, 32):
        assert re.search(rf"\|\s*{width}\s*\|", report_md), report_md


def test_failing_jobs_fail_in_slurm_and_the_sweep_names_them(entry, corpus_file):
    # lr 300 diverges within 40 steps (exit 3 when run alone); -1 is a bad value (exit 2).
    diverging = ["model.net.n_layer=2", "model.scheduler.warmup_steps=0", "trainer.max_steps=40"]
    result = run(
        entry, corpus_file, *SLURM, *diverging, "model.scheduler.min_lr=0",
        "model.optimizer.lr=1e-3,300,-1",
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if "error:" in line]
    assert len(lines) == 1, out[-3000:]
    assert "2 of 3 jobs of this sweep failed" in lines[0]
    assert "job 1 (" in lines[0] and "job 2 (" in lines[0] and "job 0 (" not in lines[0]
    assert "diverged" in lines[0] and "model.optimizer.lr" in lines[0], lines[0]
    sweep = sweep_dir(entry)
    states = {job: f["JobState"] for job, f in slurm_jobs(sweep).items()}
    assert sorted(states.values()) == ["COMPLETED", "FAILED", "FAILED"], states
    failed = yaml.safe_load((sweep / "failed_jobs.yaml").read_text())
    assert [f["job"] for f in failed] == [1, 2]
    assert steps(sweep / "0") == 40
    report = entry("report", f"sweep_dir={sweep}", "x=model.optimizer.lr")
    assert report.returncode == 0, report.stderr[-3000:]
    said = report.stdout + report.stderr
    assert "job 1 failed" in said and "job 2 failed" in said, said[-3000:]


def test_a_refused_submission_is_one_line_naming_the_key(entry, corpus_file):
    # The GPU defaults of hydra/launcher=slurm on this CPU-only cluster: sbatch refuses the gres.
    result = run(entry, corpus_file, "-m", "hydra/launcher=slurm", "seed=1,2")
    line = assert_clean_error(result, "gres", "hydra.launcher.gpus_per_node")
    assert "SLURM refused" in line


def test_more_than_a_node_has_is_refused_in_one_line(entry, corpus_file):
    """What the user sees, on any cluster: one line naming the key, and no job left waiting.
    Whether SLURM refuses the job at submission (sbatch: "CPU count", as on two nodes) or
    accepts it and would never start it (it pends, as on one node, and wavelab cancels it)
    is the scheduler's choice."""
    cpus = max(int(n) for n in subprocess.check_output(["sinfo", "-h", "-o", "%c"]).split())
    result = run(entry, corpus_file, *SLURM, f"hydra.launcher.cpus_per_task={cpus + 1}", "seed=1")
    line = assert_clean_error(result, "hydra.launcher.cpus_per_task")
    assert "CPU count" in line or "never start" in line, line
    submitted = entry.cwd / "logs/train/multiruns"
    if (
        submitted.is_dir()
        and any(submitted.iterdir())
        and (sweep_dir(entry) / ".submitit").is_dir()
    ):
        states = {j["JobState"] for j in slurm_jobs(sweep_dir(entry)).values()}
        assert states <= {"CANCELLED"}, states


def test_a_job_slurm_never_starts_is_cancelled_with_one_line(entry, corpus_file):
    # sbatch accepts more nodes than the partition has; the job would pend forever.
    nodes = len(subprocess.check_output(["sinfo", "-h", "-N", "-o", "%N"]).split())
    result = run(entry, corpus_file, *SLURM, f"hydra.launcher.nodes={nodes + 1}", "seed=1")
    assert_clean_error(result, "never start", "hydra.launcher.nodes")
    jobs = slurm_jobs(sweep_dir(entry))
    assert {j["JobState"] for j in jobs.values()} == {"CANCELLED"}


def test_ddp_launched_by_slurm_matches_ddp_sim(entry, corpus_file, train_cli, tmp_path):
    ddp = ["trainer=ddp_sim", "trainer.max_steps=4", "trainer.val_check_interval=2"]
    ok(run(entry, corpus_file, *SLURM, "hydra.launcher.tasks_per_node=2", *ddp, "seed=5"))
    job_dir = sweep_dir(entry) / "0"
    (job,) = slurm_jobs(sweep_dir(entry)).values()
    assert job["NumTasks"] == "2" and job["JobState"] == "COMPLETED"
    train_cli([*ddp, "trainer.accelerator=cpu", "model.net.n_layer=1", "seed=5"], tmp_path)
    (local,) = (tmp_path / "logs/train/runs").iterdir()
    assert final(job_dir) == final(local)  # validation metrics and optimizer steps
    assert steps(job_dir) == steps(local) == 4
    # rank 0 alone wrote: one CSV, each row once, one set of checkpoints
    assert max(csv_rows(job_dir).values()) == 1
    assert csv_rows(job_dir) == csv_rows(local)
    assert sorted(p.name for p in job_dir.rglob("*.ckpt")) == sorted(
        p.name for p in local.rglob("*.ckpt")
    )


def test_two_nodes_match_ddp_sim(entry, corpus_file, train_cli, tmp_path):
    nodes = subprocess.check_output(["sinfo", "-h", "-N", "-o", "%N"], text=True).split()
    if len(nodes) < 2:
        pytest.skip("needs SLURM with 2 nodes: WAVELAB_SLURM_NODES=2 scripts/slurm-local.sh start")
    short = ["trainer.max_steps=4", "trainer.val_check_interval=2", "seed=5"]
    two_nodes = ["hydra.launcher.nodes=2", "trainer=ddp_sim", "trainer.devices=1"]
    ok(run(entry, corpus_file, *SLURM, *two_nodes, "trainer.num_nodes=2", *short))
    job_dir = sweep_dir(entry) / "0"
    (job,) = slurm_jobs(sweep_dir(entry)).values()
    assert job["NumNodes"] == "2" and job["JobState"] == "COMPLETED", job
    train_cli(
        ["trainer=ddp_sim", "trainer.accelerator=cpu", "model.net.n_layer=1", *short], tmp_path
    )
    (local,) = (tmp_path / "logs/train/runs").iterdir()
    # Equal to float32 rounding, not bit for bit: the two-node job and ddp_sim agree to about
    # 1e-7 relative (4.2558680 against 4.2558684), which the comparison allows and no more.
    assert final(job_dir) == pytest.approx(final(local), rel=1e-6)
    assert steps(job_dir) == steps(local) == 4
    assert numeric_rows(job_dir) == pytest.approx(numeric_rows(local), rel=1e-6)


def numeric_rows(run_dir: Path) -> list[float]:
    """Every value of csv/metrics.csv, the rows and their cells in a fixed order."""
    rows = sorted(csv_rows(run_dir).elements())
    return [float(value) for row in rows for _, value in row]


# Long enough (over a hundred steps) to be preempted in the middle; every step's metrics logged.
REQUEUE = [
    "trainer.max_steps=120",
    "trainer.val_check_interval=40",
    "trainer.log_every_n_steps=1",
    "callbacks.throughput=null",  # wall-clock rates differ between any two runs
    "seed=7",
]


def test_preemption_requeues_and_continues_exactly(entry, corpus_file, train_cli, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "wavelab.run", *SLURM, f"data.path={corpus_file}", *FAST, *REQUEUE],
        cwd=entry.cwd,
        env=entry.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        metrics = None
        while metrics is None or len(metrics.read_text().splitlines()) < 30:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the job did not reach step 30"
            time.sleep(0.5)
            found = list((entry.cwd / "logs").glob("train/multiruns/*/0/csv/metrics.csv"))
            metrics = found[0] if found else None
        (job_id,) = slurm_jobs(sweep_dir(entry))
        # What a scheduler sends before preempting or at the time limit (--signal=USR1@...)
        subprocess.run(["scancel", f"--signal={signal.SIGUSR1.name[3:]}", job_id], check=True)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:]
    job_dir = sweep_dir(entry) / "0"
    (job,) = slurm_jobs(sweep_dir(entry)).values()
    assert int(job["Restarts"]) >= 1 and job["JobState"] == "COMPLETED", job
    assert "SLURM requeued this job" in (job_dir / "run.log").read_text()

    train_cli(["trainer.accelerator=cpu", "model.net.n_layer=1", *REQUEUE], tmp_path)
    (reference,) = (tmp_path / "logs/train/runs").iterdir()
    assert_same_weights_and_rows(job_dir, reference)
    assert final(job_dir) == final(reference)
