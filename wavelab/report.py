"""Tabulate and plot a sweep: ``python -m wavelab.report <sweep dir> [key=value ...]``.

The keys are in conf/report.yaml (``--help`` lists them); the first bare argument stands for
``sweep_dir=``. Reads every job under the sweep dir from the files the runs wrote (no W&B needed):
its overrides (``.hydra/overrides.yaml``), its config (``.hydra/config.yaml``) and its metrics
(``metrics.json``; a job without one, or with one cut short, is skipped with a warning). Writes
``report.md``, ``report.csv`` and ``report.png`` into ``<sweep dir>/report/``: a grid of panels,
one per metric against the swept parameter ``x`` (by default the first override whose value
differs between jobs); any other differing override splits the jobs into one line each.
``baseline`` draws a metric as a horizontal reference, e.g. an upper bound. A dir that already
holds a report is never written over: the next report goes to ``report_2/``, ``report_3/``, ...
unless ``overwrite=true``.

Jobs that differ only in ``repeats`` (default ``seed``) are repeats of one setting: the report
adds their mean, sample standard deviation and count per setting (``summary.csv`` and a second
table in ``report.md``), and the plot draws the mean with ±1 std error bars over the single runs.

A frontier (a rate–distortion plot): ``x`` names a logged metric (``x=val/bits_per_token``).
Each setting is then one point at its mean x and mean metric (±1 std both ways over repeats),
joined in order of x into one line per value of ``lines`` (e.g. ``lines=study_method``), on a
log x axis. ``references`` are x-metrics drawn as vertical lines (lossless coders' rates, e.g.
``ref/lzma_block_bits_per_token``), ``ceilings`` horizontal ones per panel, a metric or a number
(``ceilings={val/acc:val/acc_orig,val/cosine:1}``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from wavelab.core.cli import bare_word_as, hydra_entry
from wavelab.core.errors import ConfigError

log = logging.getLogger("wavelab.report")

WHICH = ("final", "best")
PANEL_INCHES = (4.0, 3.0)  # width, height of one metric's panel
MAX_LISTED_TICKS = 8  # up to this many distinct x values each get a labelled tick


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


def tick_label(value: float, _pos=None) -> str:
    """Short tick labels: 0.0003, 0.0625, 3e-05, 128."""
    return f"{value:.3g}"


def format_x_axis(ax, xs: list, numeric: bool, log_x: bool, categories: list[str]) -> None:
    """Readable x ticks: every value when there are few, else a handful, never overlapping."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    if not numeric:
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        return
    if log_x:
        ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())  # log axes label minor ticks: the overlap
    distinct = sorted(set(xs))
    if len(distinct) <= MAX_LISTED_TICKS:
        ax.set_xticks(distinct, [tick_label(x) for x in distinct])
    else:
        locator = LogLocator(subs=(1, 2, 5), numticks=6) if log_x else MaxNLocator(5)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(FuncFormatter(tick_label))
    ax.tick_params(axis="x", labelrotation=30)


def panel_grid(plt, n_panels: int, columns: int, title_inches: float, sharex: bool = False):
    """A grid of at most ``columns`` panels per row, one per metric: (figure, axes, columns)."""
    ncols = min(columns, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(PANEL_INCHES[0] * ncols, PANEL_INCHES[1] * nrows + title_inches),
        sharex=sharex,
        squeeze=False,
        layout="constrained",
    )
    return fig, axes, ncols


def plot(
    jobs: list[Job],
    x_key: str,
    series_keys: list[str],
    metrics: list[str],
    baseline: str | None,
    baseline_on: list[str] | None,
    which: str,
    out_path: Path,
    columns: int = 4,
) -> Path:
    """A grid of panels (at most ``columns`` a row), one metric each against ``x_key``, with one
    legend and one x label for the whole figure."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters and CI
    import matplotlib.pyplot as plt

    xs = [j.param(x_key) for j in jobs]
    numeric = all(is_number(x) for x in xs)
    categories = list(dict.fromkeys(str(x) for x in xs))
    if not numeric:  # categorical x (e.g. model=gpt,wavegpt): one tick per value, in order
        xs = [categories.index(str(x)) for x in xs]
    # Log scale once the values span a decade (learning rates, keep ratios); not for sizes.
    log_x = numeric and min(xs) > 0 and max(xs) / min(xs) >= 10

    fig, axes, ncols = panel_grid(plt, len(metrics), columns, title_inches=0.6, sharex=True)
    series: dict[str, list] = {}
    for job, x in zip(jobs, xs):
        label = ", ".join(f"{k}={job.overrides.get(k)}" for k in series_keys)
        series.setdefault(label, []).append((x, job))
    # Lines join a series' points only in a grid sweep (every series has the same x values); a
    # search (Optuna) samples x per trial, and lines between its trials would mean nothing.
    grid = numeric and len({tuple(sorted({x for x, _ in p})) for p in series.values()}) == 1
    legend: dict[str, object] = {}  # label -> handle, the same lines in every panel
    flat = axes.ravel()
    for ax, metric in zip(flat, metrics):
        for label, points in series.items():
            by_x: dict = {}  # repeats of one setting share an x
            for x, job in sorted(points, key=lambda p: p[0]):
                by_x.setdefault(x, []).append(job.metrics[which].get(metric, math.nan))
            stats = [mean_std([v for v in vs if not math.isnan(v)]) for vs in by_x.values()]
            repeated = any(len(vs) > 1 for vs in by_x.values())
            line = ax.errorbar(
                list(by_x),
                [m for m, _ in stats],
                yerr=[sd for _, sd in stats] if repeated else None,
                marker="o",
                linestyle="-" if grid else "none",
                capsize=3,
                label=label or None,
            )
            if repeated:  # the single runs behind each mean
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
        format_x_axis(ax, xs, numeric, log_x, categories)
        ax.set_title(metric, fontsize="medium")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        legend.update((lab, h) for h, lab in zip(handles, labels) if lab not in legend)
    for i, ax in enumerate(flat):
        if i >= len(metrics):
            ax.remove()  # the last row's empty slots
        elif i + ncols >= len(metrics):  # nothing below this panel: it shows its own x ticks
            ax.xaxis.set_tick_params(labelbottom=True)
    fig.supxlabel(f"{x_key}    ({which} metrics of {len(jobs)} jobs)")
    if legend:
        fig.legend(
            list(legend.values()),
            list(legend),
            loc="outside upper center",
            ncols=min(len(legend), 3),
            fontsize="small",
        )
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


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


def report(
    sweep_dir: str | Path | None,
    x: str | None = None,
    metrics: list[str] | None = None,
    baseline: str | None = None,
    baseline_on: list[str] | None = None,
    which: str = "final",
    out_dir: str | Path | None = None,
    repeats: str | None = "seed",
    overwrite: bool = False,
    columns: int = 4,
    lines: str | None = None,
    references: list[str] | None = None,
    ceilings: dict[str, str | float] | None = None,
    curves: list[str] | None = None,
) -> dict[str, Path]:
    """Writes the report of ``sweep_dir``; returns the paths written (csv, markdown, plot and,
    with repeats, summary; ``curves``: the learning curves too). Raises ConfigError naming the
    key for any bad argument."""
    if sweep_dir is None:
        raise ConfigError(
            "sweep_dir=null is invalid: name a multirun dir, e.g. logs/train/multiruns/<time>"
        )
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"sweep_dir={sweep_dir} is invalid: no such directory")
    if which not in WHICH:
        raise ConfigError(f"which={which} is invalid: choose one of {', '.join(WHICH)}")
    if not isinstance(columns, int) or columns < 1:
        raise ConfigError(f"columns={columns} is invalid: need a whole number >= 1")
    jobs = load_jobs(sweep_dir)
    if not jobs:
        raise ConfigError(
            f"sweep_dir={sweep_dir} is invalid: no finished jobs under it (a job dir holds "
            ".hydra/overrides.yaml and a readable metrics.json)"
        )
    logged = {k for j in jobs for k in j.metrics[which]}
    check_known("metrics", list(metrics or []), logged)
    check_known("baseline", [baseline] if baseline else [], logged)
    check_known("baseline_on", list(baseline_on or []), set(metrics or logged))
    check_known("curves", list(curves or []), logged)
    varying = varying_keys(jobs)
    if x in logged:
        check_known("references", list(references or []), logged)
        for panel, level in (ceilings or {}).items():
            check_known("ceilings", [panel], logged)
            if not is_number(level):
                check_known("ceilings", [str(level)], logged)
        if lines is not None and lines not in varying:
            raise ConfigError(
                f"lines={lines} is invalid: not a key that differs between jobs; those are: "
                f"{', '.join(varying) or 'none'}"
            )
        out = free_dir(Path(out_dir) if out_dir else sweep_dir / "report", overwrite)
        settings = [k for k in varying if k != repeats]
        paths = frontier(
            jobs, x, settings, lines, metrics, references, ceilings, which, out, columns
        )
        if curves:
            paths["curves"] = learning_curves(jobs, curves, lines, out / "curves.png", columns)
        return paths
    if x is not None and all(j.param(x) is None for j in jobs):
        raise ConfigError(
            f"x={x} is invalid: no job sets it; keys that differ between jobs: "
            f"{', '.join(varying) or 'none'}"
        )
    settings = [k for k in varying if k != repeats]
    if repeats not in varying or not settings or x == repeats:
        repeats = None  # no repeats, nothing but them, or plotted against: one job, one setting
        settings = varying
    x = x or (settings[0] if settings else None)
    if x is None:
        raise ConfigError("x=null is invalid: the jobs share all their overrides; name the key")
    if metrics is None:  # every validation metric the jobs logged
        metrics = sorted(k for k in logged if k.startswith("val/"))
    metrics = [m for m in metrics if m != baseline]
    if not metrics:
        raise ConfigError(f"metrics=null is invalid: no val/* metric logged; logged: {logged}")
    series_keys = [k for k in settings if k != x]
    job_keys = [*series_keys, *([repeats] if repeats else [])]
    shown = [*metrics, *([baseline] if baseline else [])]

    out = free_dir(Path(out_dir) if out_dir else sweep_dir / "report", overwrite)
    out.mkdir(parents=True, exist_ok=True)
    header = ["job", x, *job_keys, *shown]
    rows = [
        [
            j.dir.relative_to(sweep_dir).as_posix(),
            j.param(x),
            *(j.overrides.get(k) for k in job_keys),
            *(j.metrics[which].get(m) for m in shown),
        ]
        for j in jobs
    ]
    paths = {"csv": write_csv(out / "report.csv", header, rows)}
    lines = markdown_table(header, rows)
    if repeats:
        groups = group_repeats(jobs, [x, *series_keys])
        summary_columns = [
            x,
            *series_keys,
            "n",
            *(f"{m} {s}" for m in shown for s in ("mean", "std")),
        ]
        summary = summary_rows(groups, shown, which)
        paths["summary"] = write_csv(out / "summary.csv", summary_columns, summary)
        lines += ["", f"Mean and sample std over {repeats}:", ""]
        lines += markdown_table(summary_columns, summary)
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text("\n".join(lines) + "\n")
    paths["plot"] = plot(
        jobs, x, series_keys, metrics, baseline, baseline_on, which, out / "report.png", columns
    )
    if curves:
        paths["curves"] = learning_curves(jobs, curves, x, out / "curves.png", columns)
    return paths


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


def learning_curves(
    jobs: list[Job], metrics: list[str], color_by: str | None, path: Path, columns: int
) -> Path:
    """curves.png: each metric against the training step, one line per job (from the CSV log
    each job wrote), one colour per value of ``color_by`` (a swept key; None: one colour). It
    shows whether a job's metric had levelled off when it stopped."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters and CI
    import matplotlib.pyplot as plt

    fig, axes, _ = panel_grid(plt, len(metrics), columns, title_inches=0.8)
    label_of = {id(j): str(j.param(color_by)) if color_by else "jobs" for j in jobs}
    labels = sorted(set(label_of.values()))
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    for ax, metric in zip(axes.flat, metrics):
        for job in jobs:
            steps, values = read_curve(job, metric)
            ax.plot(steps, values, color=colors[label_of[id(job)]], alpha=0.7, linewidth=1)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=colors[label]) for label in labels]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6))
    fig.suptitle(f"learning curves of {len(jobs)} jobs" + (f", by {color_by}" if color_by else ""))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def frontier(
    jobs: list[Job],
    x: str,
    settings: list[str],
    lines: str | None,
    metrics: list[str] | None,
    references: list[str] | None,
    ceilings: dict[str, str | float] | None,
    which: str,
    out: Path,
    columns: int,
) -> dict[str, Path]:
    """The frontier report (see the module docstring): summary table and plot, per setting."""
    if metrics is None:
        metrics = sorted(k for j in jobs for k in j.metrics[which] if k.startswith("val/"))
        metrics = list(dict.fromkeys(m for m in metrics if m != x))
    groups = group_repeats(jobs, settings)
    shown = [x, *metrics]
    summary = summary_rows(groups, shown, which)
    summary_columns = [*settings, "n", *(f"{m} {s}" for m in shown for s in ("mean", "std"))]
    summary.sort(
        key=lambda row: (str(row[settings.index(lines)]) if lines else "", row[-2 * len(shown)])
    )
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": write_csv(out / "summary.csv", summary_columns, summary)}
    level_of = {
        r: mean_std([j.metrics[which][r] for j in jobs if r in j.metrics[which]])[0]
        for r in references or []
    }
    text = [f"Frontier: {which} metrics against {x}, mean ± sample std over repeats.", ""]
    text += markdown_table(summary_columns, summary)
    if level_of:
        text += ["", "Reference rates (lossless):", ""]
        text += markdown_table(["reference", x], [[r, v] for r, v in level_of.items()])
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text("\n".join(text) + "\n")

    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters and CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    fig, axes, _ = panel_grid(plt, len(metrics), columns, title_inches=0.8)
    n_settings = len(settings) + 1  # the setting's keys and n come before the statistics
    by_line: dict[str, list] = {}  # rows are sorted by line, then x: each line runs left to right
    for row in summary:
        by_line.setdefault(f"{lines}={row[settings.index(lines)]}" if lines else "jobs", []).append(
            row
        )
    legend: dict[str, object] = {}
    for ax, metric in zip(axes.ravel(), metrics):
        for label, rows in by_line.items():
            k = n_settings + 2 * (1 + metrics.index(metric))
            ax.errorbar(
                [r[n_settings] for r in rows],
                [r[k] for r in rows],
                xerr=[r[n_settings + 1] for r in rows],
                yerr=[r[k + 1] for r in rows],
                marker="o",
                capsize=3,
                label=label,
            )
        for j, (name, level) in enumerate(level_of.items()):
            ax.axvline(level, color=f"C{7 + j % 3}", linestyle=":", label=f"{name} ({level:.3g})")
        ceiling = (ceilings or {}).get(metric)
        if ceiling is not None:
            if not is_number(ceiling):
                ceiling = mean_std([j.metrics[which][ceiling] for j in jobs])[0]
            ax.axhline(ceiling, color="gray", linestyle="--", label="ceiling (per panel)")
            ax.annotate(f"{ceiling:.3g}", (0, ceiling), xycoords=("axes fraction", "data"))
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())  # minor labels of a log axis overlap
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5), numticks=8))
        ax.xaxis.set_major_formatter(FuncFormatter(tick_label))
        ax.set_title(metric, fontsize="medium")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        legend.update((lab, h) for h, lab in zip(handles, labels) if lab not in legend)
    for ax in axes.ravel()[len(metrics) :]:
        ax.remove()
    fig.supxlabel(f"{x} (log scale)    ({which} metrics of {len(jobs)} jobs)")
    fig.legend(
        list(legend.values()),
        list(legend),
        loc="outside upper center",
        ncols=min(len(legend), 4),
        fontsize="small",
    )
    paths["plot"] = out / "report.png"
    fig.savefig(paths["plot"], dpi=100)
    plt.close(fig)
    return paths


def as_list(value) -> list[str] | None:
    """A list key given as a list (``metrics=[a,b]``) or as one value (``metrics=a``)."""
    if value is None:
        return None
    return [str(v) for v in value] if OmegaConf.is_list(value) else [str(value)]


def as_mapping(value, key: str) -> dict | None:
    """A mapping key (``ceilings={val/acc:val/acc_orig}``); anything else is a ConfigError."""
    if value is None:
        return None
    if not OmegaConf.is_dict(value):
        raise ConfigError(
            f"{key}={value} is invalid: must be a mapping {{panel: metric or number}}, e.g. "
            f"'{key}={{val/acc:val/acc_orig,val/cosine:1}}' (in a shell, quote it: unquoted "
            "braces with commas expand into several arguments)"
        )
    return OmegaConf.to_container(value)


@hydra_entry("report")
def report_entry(cfg: DictConfig) -> None:
    paths = report(
        cfg.sweep_dir,
        x=cfg.x,
        metrics=as_list(cfg.metrics),
        baseline=cfg.baseline,
        baseline_on=as_list(cfg.baseline_on),
        which=cfg.which,
        out_dir=cfg.out_dir,
        repeats=cfg.repeats,
        overwrite=cfg.overwrite,
        columns=cfg.columns,
        lines=cfg.lines,
        references=as_list(cfg.references),
        ceilings=as_mapping(cfg.ceilings, "ceilings"),
        curves=as_list(cfg.curves),
    )
    print(paths["markdown"].read_text())
    for path in paths.values():
        log.info("wrote %s", path)


def main() -> None:
    bare_word_as("sweep_dir")
    report_entry()


if __name__ == "__main__":
    main()
