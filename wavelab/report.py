"""Tabulate and plot a sweep: ``python -m wavelab.report <sweep dir> [--x KEY] [--metrics ...]``.

Reads every job under the sweep dir from the files the runs wrote (no W&B needed): its overrides
(``.hydra/overrides.yaml``), its config (``.hydra/config.yaml``) and its metrics
(``metrics.json``). Writes ``report.md``, ``report.csv`` and ``report.png`` into the sweep dir:
one panel per metric against the swept parameter ``--x`` (by default the first override whose
value differs between jobs); any other differing override splits the jobs into one line each.
``--baseline`` draws a metric as a horizontal reference, e.g. an upper bound.

Jobs that differ only in ``--repeats`` (default ``seed``) are repeats of one setting: the report
adds their mean, sample standard deviation and count per setting (``summary.csv`` and a second
table in ``report.md``), and the plot draws the mean with ±1 std error bars over the single runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
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
            by_x: dict = {}  # repeats of one setting share an x
            for x, job in sorted(points, key=lambda p: p[0]):
                by_x.setdefault(x, []).append(job.metrics[which].get(metric, math.nan))
            stats = [mean_std([v for v in vs if not math.isnan(v)]) for vs in by_x.values()]
            line = ax.errorbar(
                list(by_x),
                [m for m, _ in stats],
                yerr=[sd for _, sd in stats] if any(len(vs) > 1 for vs in by_x.values()) else None,
                marker="o",
                linestyle="-" if numeric else "none",  # no line between unordered categories
                capsize=3,
                label=label or None,
            )
            if any(len(vs) > 1 for vs in by_x.values()):  # the single runs behind each mean
                ax.scatter(
                    [x for x, vs in by_x.items() for _ in vs],
                    [v for vs in by_x.values() for v in vs],
                    s=10,
                    alpha=0.4,
                    color=line[0].get_color(),
                )
        if baseline and (not baseline_on or metric in baseline_on):
            values = [v for j in jobs if (v := j.metrics[which].get(baseline)) is not None]
            if values:
                level = sum(values) / len(values)
                ax.axhline(level, color="gray", linestyle="--", label=f"{baseline} ({level:.4g})")
        if log_x:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(ticks)), ticks, rotation=20, ha="right")
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
    repeats: str | None = "seed",
) -> dict[str, Path]:
    sweep_dir = Path(sweep_dir)
    jobs = load_jobs(sweep_dir)
    if not jobs:
        raise SystemExit(
            f"no finished jobs (.hydra/overrides.yaml + metrics.json) under {sweep_dir}"
        )
    varying = varying_keys(jobs)
    settings = [k for k in varying if k != repeats]
    if repeats not in varying or not settings or x == repeats:
        repeats = None  # no repeats, nothing but them, or plotted against: one job, one setting
        settings = varying
    x = x or (settings[0] if settings else None)
    if x is None:
        raise SystemExit("the jobs share all their overrides: say which key to plot with --x")
    if metrics is None:  # every validation metric the jobs logged
        metrics = sorted({k for j in jobs for k in j.metrics[which] if k.startswith("val/")})
    metrics = [m for m in metrics if m != baseline]
    series_keys = [k for k in settings if k != x]
    job_keys = [*series_keys, *([repeats] if repeats else [])]
    shown = [*metrics, *([baseline] if baseline else [])]

    out_dir = Path(out_dir or sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["job", x, *job_keys, *shown]
    rows = [
        [
            j.dir.relative_to(sweep_dir).as_posix(),
            j.param(x),
            *(j.overrides.get(k) for k in job_keys),
            *(j.metrics[which].get(m) for m in shown),
        ]
        for j in jobs
    ]
    paths = {"csv": write_csv(out_dir / "report.csv", columns, rows)}
    lines = markdown_table(columns, rows)
    if repeats:
        groups = group_repeats(jobs, [x, *series_keys])
        columns = [x, *series_keys, "n", *(f"{m} {s}" for m in shown for s in ("mean", "std"))]
        rows = summary_rows(groups, shown, which)
        paths["summary"] = write_csv(out_dir / "summary.csv", columns, rows)
        lines += ["", f"Mean and sample std over {repeats}:", "", *markdown_table(columns, rows)]
    paths["markdown"] = out_dir / "report.md"
    paths["markdown"].write_text("\n".join(lines) + "\n")
    paths["plot"] = plot(
        jobs, x, series_keys, metrics, baseline, baseline_on, which, out_dir / "report.png"
    )
    return paths


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
    parser.add_argument(
        "--repeats",
        default="seed",
        help="the key whose values are repeats of one setting, summarised as mean and std "
        "(default: seed; 'none' lists every job as its own setting)",
    )
    args = parser.parse_args(argv)
    paths = report(
        args.sweep_dir,
        args.x,
        args.metrics,
        args.baseline,
        args.baseline_on,
        args.which,
        args.out,
        repeats=None if args.repeats == "none" else args.repeats,
    )
    print(paths["markdown"].read_text())
    print("\n".join(f"wrote {p}" for p in paths.values()))


if __name__ == "__main__":
    main()
