"""``report``: the tables and figures of one sweep dir (see wavelab/report.py for the keys)."""

from __future__ import annotations

from pathlib import Path

from wavelab.core.errors import ConfigError
from wavelab.reporting.figures import frontier, learning_curves, plot, point_metric
from wavelab.reporting.jobs import (
    check_known,
    free_dir,
    group_repeats,
    is_number,
    load_jobs,
    markdown_table,
    summary_rows,
    varying_keys,
    write_csv,
)
from wavelab.reporting.settings import WHICH, ReportSettings


def report(sweep_dir: str | Path | None, settings: ReportSettings | None = None) -> dict[str, Path]:
    """Writes the report of ``sweep_dir``; returns the paths written (csv, markdown, plot and,
    with repeats, summary; ``curves``: the learning curves too). Raises ConfigError naming the
    key for any bad setting."""
    o = settings or ReportSettings()
    jobs = checked_jobs(sweep_dir, o)
    sweep_dir = Path(sweep_dir)
    logged = {k for j in jobs for k in j.metrics[o.which]}
    varying = varying_keys(jobs)
    out = free_dir(Path(o.out_dir) if o.out_dir else sweep_dir / "report", o.overwrite)
    if o.x in logged:  # a metric as x: the frontier
        check_frontier(o, logged, varying)
        paths = frontier(jobs, [k for k in varying if k != o.repeats], o, out)
        color_by = o.lines
    else:
        paths = sweep_tables(sweep_dir, jobs, o, logged, varying, out)
        color_by = paths.pop("x")
    if o.curves:
        paths["curves"] = learning_curves(jobs, o.curves, color_by, out / "curves.png", o.columns)
    return paths


def checked_jobs(sweep_dir: str | Path | None, o: ReportSettings) -> list:
    """The finished jobs of ``sweep_dir``, after the checks that need no job's metrics."""
    if sweep_dir is None:
        raise ConfigError(
            "sweep_dir=null is invalid: name a multirun dir, e.g. logs/train/multiruns/<time>"
        )
    if not Path(sweep_dir).is_dir():
        raise ConfigError(f"sweep_dir={sweep_dir} is invalid: no such directory")
    if o.which not in WHICH:
        raise ConfigError(f"which={o.which} is invalid: choose one of {', '.join(WHICH)}")
    if not isinstance(o.columns, int) or o.columns < 1:
        raise ConfigError(f"columns={o.columns} is invalid: need a whole number >= 1")
    jobs = load_jobs(Path(sweep_dir))
    if not jobs:
        raise ConfigError(
            f"sweep_dir={sweep_dir} is invalid: no finished jobs under it (a job dir holds "
            ".hydra/overrides.yaml and a readable metrics.json)"
        )
    logged = {k for j in jobs for k in j.metrics[o.which]}
    check_known("metrics", list(o.metrics or []), logged)
    check_known("baseline", [o.baseline] if o.baseline else [], logged)
    check_known("baseline_on", list(o.baseline_on or []), set(o.metrics or logged))
    check_known("curves", list(o.curves or []), logged)
    return jobs


def check_frontier(o: ReportSettings, logged: set[str], varying: list[str]) -> None:
    check_known("references", list(o.references or []), logged)
    for panel, level in (o.ceilings or {}).items():
        check_known("ceilings", [panel], logged)
        if not is_number(level):
            check_known("ceilings", [str(level)], logged)
    for prefixes in (o.reference_lines or {}).values():
        points = [prefixes] if isinstance(prefixes, str) else prefixes
        check_known("reference_lines", [point_metric(p, o.x) for p in points], logged)
    if o.lines is not None and o.lines not in varying:
        raise ConfigError(
            f"lines={o.lines} is invalid: not a key that differs between jobs; those are: "
            f"{', '.join(varying) or 'none'}"
        )


def sweep_tables(
    sweep_dir: Path, jobs: list, o: ReportSettings, logged: set[str], varying: list[str], out: Path
) -> dict[str, Path | str]:
    """report.csv, report.md (and summary.csv over repeats) and report.png against the swept
    key; the key itself under "x"."""
    x, repeats = o.x, o.repeats
    if x is not None and all(j.param(x) is None for j in jobs):
        raise ConfigError(
            f"x={x} is invalid: no job sets it; keys that differ between jobs: "
            f"{', '.join(varying) or 'none'}"
        )
    setting_keys = [k for k in varying if k != repeats]
    if repeats not in varying or not setting_keys or x == repeats:
        repeats = None  # no repeats, nothing but them, or plotted against: one job, one setting
        setting_keys = varying
    x = x or (setting_keys[0] if setting_keys else None)
    if x is None:
        raise ConfigError("x=null is invalid: the jobs share all their overrides; name the key")
    metrics = (
        o.metrics if o.metrics is not None else sorted(k for k in logged if k.startswith("val/"))
    )
    metrics = [m for m in metrics if m != o.baseline]
    if not metrics:
        raise ConfigError(f"metrics=null is invalid: no val/* metric logged; logged: {logged}")
    series_keys = [k for k in setting_keys if k != x]
    job_keys = [*series_keys, *([repeats] if repeats else [])]
    shown = [*metrics, *([o.baseline] if o.baseline else [])]

    out.mkdir(parents=True, exist_ok=True)
    header = ["job", x, *job_keys, *shown]
    rows = [
        [
            j.dir.relative_to(sweep_dir).as_posix(),
            j.param(x),
            *(j.overrides.get(k) for k in job_keys),
            *(j.metrics[o.which].get(m) for m in shown),
        ]
        for j in jobs
    ]
    paths: dict[str, Path | str] = {"csv": write_csv(out / "report.csv", header, rows)}
    text = markdown_table(header, rows)
    if repeats:
        groups = group_repeats(jobs, [x, *series_keys])
        stats = (f"{m} {s}" for m in shown for s in ("mean", "std"))
        summary_columns = [x, *series_keys, "n", *stats]
        summary = summary_rows(groups, shown, o.which)
        paths["summary"] = write_csv(out / "summary.csv", summary_columns, summary)
        text += ["", f"Mean and sample std over {repeats}:", ""]
        text += markdown_table(summary_columns, summary)
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text("\n".join(text) + "\n")
    paths["plot"] = plot(jobs, x, series_keys, metrics, o, out / "report.png")
    paths["x"] = x
    return paths
