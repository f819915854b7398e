"""SLURM through hydra-submitit-launcher (``hydra/launcher=slurm`` or ``slurm_cpu``).

:class:`SlurmLauncher` is the plugin's launcher with three changes, all about a sweep that cannot
finish as submitted:

- a submission that sbatch refuses ends in one ``error:`` line (exit 2) that quotes SLURM and
  names the ``hydra.launcher.*`` key to change, instead of submitit's traceback;
- a job that SLURM accepted but will never start (it pends for a reason no wait can fix, e.g.
  more CPUs per task than a node has) is cancelled with the rest of the sweep, the same way;
- it waits for every job, asking SLURM itself (``scontrol``) how each ended, so a job that died
  without leaving submitit a result (an exit 2, a kill) is seen as failed even where ``sacct``
  (accounting) is missing, which submitit's own wait needs; then one line names every failed
  job, the sweep dir gets ``failed_jobs.yaml`` (which ``wavelab.report`` names), and the sweep
  exits non-zero.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from wavelab.core.errors import DIVERGED_EXIT, USER_ERROR_EXIT
from wavelab.core.hydra_callbacks import FAILED_JOBS_FILE

POLL_SECONDS = 2.0
log = logging.getLogger(__name__)

# What sbatch's refusals mean for the launcher's keys.
REFUSAL_KEYS = (
    (
        "gres",
        "hydra.launcher.gpus_per_node (the cluster has no such GPUs: set it to 0, or use "
        "hydra/launcher=slurm_cpu)",
    ),
    ("partition", "hydra.launcher.partition"),
    ("cpu count", "hydra.launcher.cpus_per_task or tasks_per_node (more CPUs than a node has)"),
    (
        "node configuration is not available",
        "hydra.launcher.mem_gb, cpus_per_task, "
        "tasks_per_node or gpus_per_node (more than one node has)",
    ),
    ("memory", "hydra.launcher.mem_gb"),
    ("node count", "hydra.launcher.nodes"),
    ("time", "hydra.launcher.timeout_min"),
    ("account", "hydra.launcher.account"),
    ("qos", "hydra.launcher.qos"),
)
# Reasons a pending job gives that waiting will not change.
NEVER_STARTS = {
    "PartitionConfig": "more than the partition has",
    "PartitionNodeLimit": "more nodes than the partition has",
    "PartitionTimeLimit": "a longer time than the partition allows",
    "BadConstraints": "constraints no node meets",
}
FINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
    "DEADLINE", "PREEMPTED", "SPECIAL_EXIT",
}  # fmt: skip


def refusal_line(stderr: str) -> str:
    """sbatch's refusal as one line that says which launcher key to change."""
    said = [line.split("error:", 1)[-1].strip() for line in stderr.splitlines() if line.strip()]
    said = [s.removeprefix("Batch job submission failed:").strip() for s in said]
    quoted = "; ".join(dict.fromkeys(s for s in said if s)) or "no reason given"
    key = next(
        (k for word, k in REFUSAL_KEYS if word in quoted.lower()),
        "the hydra.launcher.* keys (conf/hydra/launcher/slurm.yaml)",
    )
    return f"SLURM refused the sweep's jobs: sbatch said {quoted!r}; change {key}"


def fail(message: str, code: int = USER_ERROR_EXIT) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def slurm_states(array_ids: set[str]) -> dict[str, dict[str, str]]:
    """``scontrol show job`` of each array, by task id (``<array>_<task>``): JobState, Reason,
    ExitCode, ... SLURM keeps a finished job for MinJobAge (300 s by default); one it no longer
    knows is absent."""
    states = {}
    for array_id in array_ids:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", array_id], capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            task = fields.get("ArrayTaskId", "")
            if not task:  # a sweep of one job is submitted as a plain job
                states[fields.get("JobId", array_id)] = fields
            elif task.isdigit():
                states[f"{fields.get('ArrayJobId', array_id)}_{task}"] = fields
            else:  # pending tasks of the array, listed as one record, e.g. 2-3 or 2,4
                for part in filter(None, re.split(r"[,%]", task)):
                    if "-" in part:
                        lo, hi = part.split("-")
                        ids = range(int(lo), int(hi) + 1) if lo.isdigit() and hi.isdigit() else []
                        for i in ids:
                            states[f"{fields.get('ArrayJobId', array_id)}_{i}"] = fields
    return states


def error_line(log: Path) -> str | None:
    """The last ``error:`` line a job wrote, without its log prefix."""
    if not log.is_file():
        return None
    lines = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "error:" in line and not line.startswith(("srun:", "slurmstepd:"))
    ]
    return lines[-1][lines[-1].index("error:") :].strip() if lines else None


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def __call__(self, *args, **kwargs):
        """Runs one job inside its SLURM job. Hydra returns a job's exception instead of raising
        it, which would end the SLURM job as COMPLETED; so a diverged job exits with
        DIVERGED_EXIT (its error line is logged), and any other exception is raised, for SLURM to
        mark the job FAILED."""
        from hydra.core.utils import JobStatus

        from wavelab.core.errors import TrainingDiverged

        ret = super().__call__(*args, **kwargs)
        if ret.status == JobStatus.FAILED:
            if isinstance(ret._return_value, TrainingDiverged):
                sys.exit(DIVERGED_EXIT)
            raise ret._return_value
        return ret

    def launch(self, job_overrides, initial_job_idx):
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        # As the plugin's launch() (hydra-submitit-launcher 1.2), up to map_array.
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=self.params["submitit_folder"],
            slurm_max_num_timeout=self.params.get("max_num_timeout", 0),
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in base else f"slurm_{k}": v
                for k, v in self.params.items()
                if k not in init_keys
            }
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        stderr = io.StringIO()  # submitit prints sbatch's refusal there before it raises
        try:
            with contextlib.redirect_stderr(stderr):
                jobs = executor.map_array(self, *zip(*job_params))
        except submitit.core.utils.FailedJobError as e:
            fail(refusal_line(str(e) or stderr.getvalue()))
        log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
        for (overrides, _, idx, *_), job in zip(job_params, jobs):
            log.info(
                "\t#%d : %s (SLURM job %s)", idx, " ".join(filter_overrides(overrides)), job.job_id
            )
        return self.wait(jobs, job_params, sweep_dir)

    def wait(self, jobs, job_params, sweep_dir: Path):
        arrays = {job.job_id.split("_")[0] for job in jobs}
        outcome: dict[int, tuple[str, int] | None] = {}  # job index -> None (success) or failure
        while len(outcome) < len(jobs):
            states = slurm_states(arrays)
            for i, job in enumerate(jobs):
                if i in outcome:
                    continue
                fields = states.get(job.job_id, {})
                state = fields.get("JobState", "")
                if job.paths.result_pickle.exists() and (not fields or state in FINAL_STATES):
                    outcome[i] = self.result_failure(job)
                elif state in FINAL_STATES or (not fields and job.done()):
                    outcome[i] = self.slurm_failure(job, fields)
                elif state == "PENDING" and fields.get("Reason") in NEVER_STARTS:
                    subprocess.run(["scancel", *sorted(arrays)], check=False)
                    reason = fields["Reason"]
                    fail(
                        f"SLURM will never start job {job.job_id}: it pends with reason {reason} "
                        f"(it asks for {NEVER_STARTS[reason]}), so the sweep's jobs were "
                        "cancelled; change one of hydra.launcher.nodes, "
                        "hydra.launcher.tasks_per_node, hydra.launcher.cpus_per_task, "
                        "hydra.launcher.mem_gb or hydra.launcher.timeout_min"
                    )
            if len(outcome) < len(jobs):
                time.sleep(POLL_SECONDS)
        failed = {i: f for i, f in outcome.items() if f is not None}
        if not failed:
            return [job.results()[0] for job in jobs]
        records, parts = [], []
        shared = set.intersection(*(set(p[0]) for p in job_params))
        for i, (reason, _) in sorted(failed.items()):
            overrides, _, idx, *_ = job_params[i]
            own = " ".join(o for o in overrides if o not in shared)
            log = jobs[i].paths.stderr
            records.append(
                {
                    "job": idx,
                    "slurm_job": jobs[i].job_id,
                    "overrides": overrides,
                    "reason": reason,
                    "log": str(log),
                }
            )
            parts.append(f"job {idx} ({own}; SLURM job {jobs[i].job_id}, log {log}): {reason}")
        (sweep_dir / FAILED_JOBS_FILE).write_text(yaml.safe_dump(records, sort_keys=False))
        codes = {code for _, code in failed.values()}
        fail(
            f"{len(failed)} of {len(jobs)} jobs of this sweep failed, the others completed: "
            + "; ".join(parts),
            codes.pop() if len(codes) == 1 else 1,
        )

    @staticmethod
    def result_failure(job) -> tuple[str, int] | None:
        """None for a job that returned; else why it raised, and the sweep's exit code for it."""
        try:
            job.results()
            return None
        except Exception as e:
            trace = [line for line in str(e).splitlines() if line.strip()]
            last = trace[-1].strip() if trace else type(e).__name__
            code = DIVERGED_EXIT if "TrainingDiverged" in last else 1
            return " ".join(last.split()), code

    @staticmethod
    def slurm_failure(job, fields: dict[str, str]) -> tuple[str, int]:
        state = fields.get("JobState", "gone from SLURM's memory")
        exit_code = int(fields.get("ExitCode", "1:0").split(":")[0] or 1)
        said = error_line(job.paths.stderr) or error_line(job.paths.stdout)
        reason = f"SLURM state {state}, exit {exit_code}" + (f": {said}" if said else "")
        return reason, exit_code or 1
