"""Tabulate and plot a sweep: ``python -m wavelab.report <sweep dir> [--x KEY] [--metrics ...]``.

Reads every job under the sweep dir from the files the runs wrote (no W&B needed): its overrides
(``.hydra/overrides.yaml``), its config (``.hydra/config.yaml``) and its metrics
(``metrics.json``). Writes ``report.md``, ``report.csv`` and ``report.png`` into the sweep dir:
one panel per metric against the swept parameter ``--x`` (by default the first override whose
value differs between jobs); any other differing override splits the jobs into one line each.
``--baseline`` draws a metric as a horizontal reference, e.g. an upper bound.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import OmegaConf


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


def load_jobs(sweep_dir: Path) -> list[Job]:
    jobs = []
    for overrides_file in sweep_dir.rglob(".hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        metrics_file = job_dir / "metrics.json"
        if not metrics_file.is_file():
            continue  # a job that failed before its first validation
        overrides = {}
        for line in yaml.safe_load(overrides_file.read_text()) or []:
            key, _, value = line.lstrip("+~").partition("=")
            overrides[key] = value
        jobs.append(
            Job(
                job_dir,
                overrides,
                OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra" / "config.yaml")),
                json.loads(metrics_file.read_text()),
            )
        )
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


def write_tables(jobs, columns, rows, out_dir: Path) -> tuple[Path, Path]:
    csv_path, md_path = out_dir / "report.csv", out_dir / "report.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path


def plot(jobs, x_key, series_keys, metrics, baseline, baseline_on, which, out_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters and CI
    import matplotlib.pyplot as plt

    xs = [j.param(x_key) for j in jobs]
    numeric = all(is_number(x) for x in xs)
    if not numeric:  # categorical x (e.g. model=gpt,wavegpt): one tick per value, in order
        ticks = list(dict.fromkeys(str(x) for x in xs))
        xs = [ticks.index(str(x)) for x in xs]
    log_x = numeric and min(xs) > 0 and max(xs) / min(xs) >= 100

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    series = {}
    for job, x in zip(jobs, xs):
        label = ", ".join(f"{k}={job.overrides.get(k)}" for k in series_keys)
        series.setdefault(label, []).append((x, job))
    for ax, metric in zip(axes[0], metrics):
        for label, points in series.items():
            points.sort(key=lambda p: p[0])
            values = [p[1].metrics[which].get(metric, math.nan) for p in points]
            ax.plot([p[0] for p in points], values, marker="o", label=label or None)
        if baseline and (not baseline_on or metric in baseline_on):
            values = [v for j in jobs if (v := j.metrics[which].get(baseline)) is not None]
            if values:
                level = sum(values) / len(values)
                ax.axhline(level, color="gray", linestyle="--", label=f"{baseline} ({level:.4g})")
        if log_x:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(ticks)), ticks)
        ax.set_xlabel(x_key)
        ax.set_title(f"{metric} ({which})")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def report(
    sweep_dir: str | Path,
    x: str | None = None,
    metrics: list[str] | None = None,
    baseline: str | None = None,
    baseline_on: list[str] | None = None,
    which: str = "final",
    out_dir: str | Path | None = None,
) -> dict[str, Path]:
    sweep_dir = Path(sweep_dir)
    jobs = load_jobs(sweep_dir)
    if not jobs:
        raise SystemExit(
            f"no finished jobs (.hydra/overrides.yaml + metrics.json) under {sweep_dir}"
        )
    varying = varying_keys(jobs)
    x = x or (varying[0] if varying else None)
    if x is None:
        raise SystemExit("the jobs share all their overrides: say which key to plot with --x")
    if metrics is None:  # every validation metric the jobs logged
        metrics = sorted({k for j in jobs for k in j.metrics[which] if k.startswith("val/")})
    metrics = [m for m in metrics if m != baseline]
    series_keys = [k for k in varying if k != x]

    out_dir = Path(out_dir or sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["job", x, *series_keys, *metrics, *([baseline] if baseline else [])]
    rows = [
        [
            j.dir.relative_to(sweep_dir).as_posix(),
            j.param(x),
            *(j.overrides.get(k) for k in series_keys),
            *(j.metrics[which].get(m) for m in [*metrics, *([baseline] if baseline else [])]),
        ]
        for j in jobs
    ]
    md, table = write_tables(jobs, columns, rows, out_dir)
    png = plot(jobs, x, series_keys, metrics, baseline, baseline_on, which, out_dir / "report.png")
    return {"markdown": md, "csv": table, "plot": png}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="a multirun dir, e.g. logs/train/multiruns/<time>")
    parser.add_argument("--x", help="the swept config key (default: the first that varies)")
    parser.add_argument("--metrics", nargs="+", help="metrics to show (default: all val/*)")
    parser.add_argument("--baseline", help="a metric drawn as a horizontal reference line")
    parser.add_argument(
        "--baseline-on", nargs="+", help="the panels (metrics) to draw it on (default: all)"
    )
    parser.add_argument(
        "--which",
        choices=["final", "best"],
        default="final",
        help="final: the last validation; best: the validation with the best monitored metric",
    )
    parser.add_argument("--out", help="where to write report.{md,csv,png} (default: sweep dir)")
    args = parser.parse_args(argv)
    paths = report(
        args.sweep_dir, args.x, args.metrics, args.baseline, args.baseline_on, args.which, args.out
    )
    print(paths["markdown"].read_text())
    print("\n".join(f"wrote {p}" for p in paths.values()))


if __name__ == "__main__":
    main()
