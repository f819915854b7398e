"""A sweep's jobs as their files describe them, and the tables made of them."""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from wavelab.core.errors import ConfigError
from wavelab.reporting.settings import WHICH

log = logging.getLogger("wavelab.report")


@dataclass
class Job:
    dir: Path
    overrides: dict[str, str]  # key -> value as typed on the command line
    config: dict
    metrics: dict  # metrics.json: {"final": {...}, "best": {...}, ...}

    def param(self, key: str):
        """A swept parameter's value: the resolved config's (typed) if there, else the override's."""
        value = OmegaConf.select(OmegaConf.create(self.config), key, default=None)
        if value is None or OmegaConf.is_config(value):  # a config group (model=gpt): its name
            return self.overrides.get(key)
        return value


def read_metrics(path: Path) -> dict | None:
    """A job's metrics.json, or None (with a warning naming it) when it is cut short or corrupt:
    a job killed while writing it must not take the whole report down."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("skipping %s: unreadable (%s)", path, e)
        return None
    if not isinstance(metrics, dict) or not all(isinstance(metrics.get(w), dict) for w in WHICH):
        log.warning("skipping %s: no 'final' and 'best' metrics in it", path)
        return None
    return metrics


def load_jobs(sweep_dir: Path) -> list[Job]:
    from wavelab.core.hydra_callbacks import read_failed_jobs

    for failed in read_failed_jobs(sweep_dir):  # recorded by wavelab.core.slurm.SlurmLauncher
        log.warning(
            "job %s failed (SLURM job %s): %s; not in the report",
            failed["job"],
            failed["slurm_job"],
            failed["reason"],
        )
    failed_dirs = {str(f["job"]) for f in read_failed_jobs(sweep_dir)}
    jobs = []
    for overrides_file in sweep_dir.rglob(".hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        if job_dir.parent == sweep_dir and job_dir.name in failed_dirs:
            continue  # its metrics.json, if any, is of a run that did not finish
        metrics_file = job_dir / "metrics.json"
        if not metrics_file.is_file():  # a job that failed before its first validation
            log.warning(
                "skipping %s: it has no metrics.json (it ended before writing one)", job_dir
            )
            continue
        metrics = read_metrics(metrics_file)
        if metrics is None:
            continue
        overrides = {}
        for line in yaml.safe_load(overrides_file.read_text()) or []:
            key, _, value = line.lstrip("+~").partition("=")
            overrides[key] = value
        config = OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra" / "config.yaml"))
        jobs.append(Job(job_dir, overrides, config, metrics))
    # Hydra numbers the jobs 0, 1, ...; sort numerically where it did.
    return sorted(jobs, key=lambda j: (len(j.dir.name), str(j.dir)))


def varying_keys(jobs: list[Job]) -> list[str]:
    """The override keys whose values differ between jobs, in command-line order."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys]
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fmt(value) -> str:
    if is_number(value) and isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def write_csv(path: Path, columns: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def markdown_table(columns: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN where none are given."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def group_repeats(jobs: list[Job], keys: list[str]) -> dict[tuple, list[Job]]:
    """Jobs grouped by their values of ``keys`` (the setting), in first-seen order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(job.overrides.get(k) for k in keys), []).append(job)
    return groups


def summary_rows(groups: dict[tuple, list[Job]], metrics: list[str], which: str) -> list[list]:
    rows = []
    for setting, members in groups.items():
        row = [*setting, len(members)]
        for m in metrics:
            values = [v for j in members if (v := j.metrics[which].get(m)) is not None]
            row += mean_std(values)
        rows.append(row)
    return rows


def free_dir(out_dir: Path, overwrite: bool) -> Path:
    """``out_dir``, or when it already holds a report (and ``overwrite`` is off) the first of
    ``<out_dir>_2``, ``<out_dir>_3``, ... that does not."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out_dir={out_dir} is invalid: it is a file; give a directory")
    candidate, n = out_dir, 1
    while not overwrite and (candidate / "report.md").exists():
        n += 1
        candidate = out_dir.with_name(f"{out_dir.name}_{n}")
    return candidate


def check_known(key: str, wanted: list[str], known: set[str]) -> None:
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise ConfigError(
            f"{key}={unknown[0]} is invalid: no job logged it; logged: {', '.join(sorted(known))}"
        )


def read_curve(job: Job, metric: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``metric`` in the job's csv/metrics.csv; empty without one."""
    path = job.dir / "csv" / "metrics.csv"
    if not path.is_file():
        log.warning("no learning curve for %s: %s is missing", job.dir, path)
        return [], []
    steps, values = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get(metric) not in (None, ""):
                steps.append(float(row["step"]))
                values.append(float(row[metric]))
    return steps, values
