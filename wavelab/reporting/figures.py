"""The report's figures: metric panels against the swept key, learning curves and frontiers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from wavelab.reporting.jobs import (
    Job,
    group_repeats,
    is_number,
    markdown_table,
    mean_std,
    read_curve,
    summary_rows,
    write_csv,
)
from wavelab.reporting.settings import ReportSettings

PANEL_INCHES = (4.0, 3.0)  # width, height of one metric's panel
MAX_LISTED_TICKS = 8  # up to this many distinct x values each get a labelled tick


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


def figure_legend(fig, legend: dict, columns: int) -> None:
    """One legend above all panels (label -> handle), at most ``columns`` entries a row."""
    if legend:
        fig.legend(
            list(legend.values()),
            list(legend),
            loc="outside upper center",
            ncols=min(len(legend), columns),
            fontsize="small",
        )


def plot(
    jobs: list[Job],
    x_key: str,
    series_keys: list[str],
    metrics: list[str],
    o: ReportSettings,
    out_path: Path,
) -> Path:
    """A grid of panels (at most ``o.columns`` a row), one metric each against ``x_key``, with
    one legend and one x label for the whole figure; ``o.baseline`` as a horizontal line."""
    baseline, baseline_on, which, columns = o.baseline, o.baseline_on, o.which, o.columns
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
    figure_legend(fig, legend, columns=3)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


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


def point_metric(prefix: str, metric: str) -> str:
    """The metric a reference method logs under ``prefix`` for ``metric`` (group/name):
    ``prefix/name``."""
    return f"{prefix}/{metric.split('/', 1)[-1]}"


def logged_mean(jobs: list[Job], metric: str, which: str) -> float | None:
    """The mean of ``metric`` over the jobs that logged it; None if none did."""
    values = [j.metrics[which][metric] for j in jobs if metric in j.metrics[which]]
    return mean_std(values)[0] if values else None


@dataclass
class Frontier:
    """What the frontier report shows: one summary row per setting, sorted by line then x, and
    the lossless reference rates and reference methods drawn beside them."""

    jobs: list[Job]
    o: ReportSettings
    metrics: list[str]
    columns: list[str]
    summary: list[list]
    references: dict[str, float | None]  # a lossless rate: a vertical line at its x
    reference_lines: dict[str, list[str]]  # a method's points, by the metric prefix they log

    def value(self, row: list, name: str):
        return row[self.columns.index(name)]

    def by_line(self) -> dict[str, list[list]]:
        lines = self.o.lines
        out: dict[str, list] = {}  # the rows are sorted by line, then x: a line runs left to right
        for row in self.summary:
            out.setdefault(f"{lines}={self.value(row, lines)}" if lines else "jobs", []).append(row)
        return out

    def reference_points(self, prefixes: list[str], metric: str) -> list[tuple[float, float]]:
        which, x = self.o.which, self.o.x
        points = [
            (
                logged_mean(self.jobs, point_metric(p, x), which),
                logged_mean(self.jobs, point_metric(p, metric), which),
            )
            for p in prefixes
        ]
        return [(px, py) for px, py in points if px is not None and py is not None]


def build_frontier(jobs: list[Job], settings: list[str], o: ReportSettings) -> Frontier:
    x, which = o.x, o.which
    metrics = o.metrics
    if metrics is None:
        metrics = sorted(k for j in jobs for k in j.metrics[which] if k.startswith("val/"))
        metrics = list(dict.fromkeys(m for m in metrics if m != x))
    shown = [x, *metrics]
    summary = summary_rows(group_repeats(jobs, settings), shown, which)
    columns = [*settings, "n", *(f"{m} {s}" for m in shown for s in ("mean", "std"))]
    line_at, x_at = (columns.index(o.lines) if o.lines else None), columns.index(f"{x} mean")
    summary.sort(key=lambda row: (str(row[line_at]) if o.lines else "", row[x_at]))
    reference_lines = {
        label: [prefixes] if isinstance(prefixes, str) else list(prefixes)
        for label, prefixes in (o.reference_lines or {}).items()
    }
    references = {r: logged_mean(jobs, r, which) for r in o.references or []}
    return Frontier(jobs, o, metrics, columns, summary, references, reference_lines)


def frontier_markdown(f: Frontier) -> str:
    x, which = f.o.x, f.o.which
    shown = [x, *f.metrics]
    text = [f"Frontier: {which} metrics against {x}, mean ± sample std over repeats.", ""]
    text += markdown_table(f.columns, f.summary)
    if f.references:
        text += ["", "Reference rates (lossless):", ""]
        text += markdown_table(["reference", x], [[r, v] for r, v in f.references.items()])
    if f.reference_lines:
        rows = [
            [label, prefix, *(logged_mean(f.jobs, point_metric(prefix, m), which) for m in shown)]
            for label, prefixes in f.reference_lines.items()
            for prefix in prefixes
        ]
        text += ["", "Reference methods:", ""]
        text += markdown_table(["reference", "metrics", *shown], rows)
    return "\n".join(text) + "\n"


def draw_frontier_panel(ax, f: Frontier, metric: str) -> None:
    """One metric against x: a line per setting of ``lines``, then the references."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    x = f.o.x
    for label, rows in f.by_line().items():
        ax.errorbar(
            [f.value(r, f"{x} mean") for r in rows],
            [f.value(r, f"{metric} mean") for r in rows],
            xerr=[f.value(r, f"{x} std") for r in rows],
            yerr=[f.value(r, f"{metric} std") for r in rows],
            marker="o",
            capsize=3,
            label=label,
        )
    for j, (label, prefixes) in enumerate(f.reference_lines.items()):
        points = f.reference_points(prefixes, metric)
        if points:
            ax.plot(*zip(*points), color=f"C{4 + j % 3}", marker="s", linestyle="--", label=label)
    for j, (name, level) in enumerate(f.references.items()):
        ax.axvline(level, color=f"C{7 + j % 3}", linestyle=":", label=f"{name} ({level:.3g})")
    ceiling = (f.o.ceilings or {}).get(metric)
    if ceiling is not None:
        if not is_number(ceiling):
            ceiling = mean_std([j.metrics[f.o.which][ceiling] for j in f.jobs])[0]
        ax.axhline(ceiling, color="gray", linestyle="--", label="ceiling (per panel)")
        ax.annotate(f"{ceiling:.3g}", (0, ceiling), xycoords=("axes fraction", "data"))
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())  # minor labels of a log axis overlap
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5), numticks=8))
    ax.xaxis.set_major_formatter(FuncFormatter(tick_label))
    ax.set_title(metric, fontsize="medium")
    ax.grid(alpha=0.3)


def frontier(jobs: list[Job], settings: list[str], o: ReportSettings, out: Path) -> dict[str, Path]:
    """The frontier report (wavelab/report.py's docstring): summary table and plot, one point
    per setting (the values of ``settings``) at its mean x and metric."""
    f = build_frontier(jobs, settings, o)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": write_csv(out / "summary.csv", f.columns, f.summary)}
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(frontier_markdown(f))

    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters and CI
    import matplotlib.pyplot as plt

    fig, axes, _ = panel_grid(plt, len(f.metrics), o.columns, title_inches=0.8)
    legend: dict[str, object] = {}
    for ax, metric in zip(axes.ravel(), f.metrics):
        draw_frontier_panel(ax, f, metric)
        handles, labels = ax.get_legend_handles_labels()
        legend.update((lab, h) for h, lab in zip(handles, labels) if lab not in legend)
    for ax in axes.ravel()[len(f.metrics) :]:
        ax.remove()
    fig.supxlabel(f"{o.x} (log scale)    ({o.which} metrics of {len(jobs)} jobs)")
    figure_legend(fig, legend, columns=4)
    paths["plot"] = out / "report.png"
    fig.savefig(paths["plot"], dpi=100)
    plt.close(fig)
    return paths
