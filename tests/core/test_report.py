"""`wavelab.report` over sweep dirs laid out as Hydra and RunSummary write them: seeds are repeats."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import shutil
import statistics
import struct

import pytest
import yaml

from wavelab.core.errors import ConfigError
from wavelab.reporting.figures import PANEL_INCHES, format_x_axis
from wavelab.reporting.jobs import load_jobs, read_curve
from wavelab.reporting.sweep import ReportSettings, report

# (model, seed) -> final val/loss of a made-up 2 x 3 sweep
LOSSES = {
    ("gpt", 1): 1.90,
    ("gpt", 2): 1.92,
    ("gpt", 3): 1.93,
    ("wavegpt", 1): 1.89,
    ("wavegpt", 2): 1.91,
    ("wavegpt", 3): 1.95,
}


@pytest.fixture
def seed_sweep(tmp_path):
    """A multirun dir of 6 finished jobs (model x seed) and one that died before validating."""
    sweep = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    for num, ((model, seed), loss) in enumerate(LOSSES.items()):
        job = sweep / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump([f"model={model}", f"seed={seed}"])
        )
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "model": {}}))
        metrics = {"val/loss": loss, "val/acc": 0.5 + seed / 100}
        (job / "metrics.json").write_text(json.dumps({"final": metrics, "best": metrics}))
    dead = sweep / str(len(LOSSES)) / ".hydra"
    dead.mkdir(parents=True)
    (dead / "overrides.yaml").write_text(yaml.safe_dump(["model=gpt", "seed=4"]))
    return sweep


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_seeds_are_summarised_as_mean_and_std_per_setting(seed_sweep, tmp_path):
    out = report(seed_sweep, ReportSettings(metrics=["val/loss"], out_dir=tmp_path / "out"))
    jobs = read_csv(out["csv"])
    assert [(j["model"], j["seed"]) for j in jobs] == [(m, str(s)) for m, s in LOSSES]
    summary = {row["model"]: row for row in read_csv(out["summary"])}
    assert set(summary) == {"gpt", "wavegpt"}
    for model in summary:
        losses = [v for (m, _), v in LOSSES.items() if m == model]
        assert int(summary[model]["n"]) == 3
        assert float(summary[model]["val/loss mean"]) == pytest.approx(statistics.fmean(losses))
        assert float(summary[model]["val/loss std"]) == pytest.approx(statistics.stdev(losses))
    md = out["markdown"].read_text()
    assert "Mean and sample std over seed:" in md
    assert "| model | n | val/loss mean | val/loss std |" in md
    assert out["plot"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("kwargs", "header"),
    [
        ({"repeats": None}, "| job | model | seed | val/loss |"),
        ({"x": "seed"}, "| job | seed | model | val/loss |"),  # plotted against the seed
    ],
)
def test_without_repeats_every_job_is_its_own_setting(seed_sweep, tmp_path, kwargs, header):
    out = report(
        seed_sweep, ReportSettings(metrics=["val/loss"], out_dir=tmp_path / "out", **kwargs)
    )
    assert "summary" not in out and "Mean and sample std" not in out["markdown"].read_text()
    assert out["markdown"].read_text().splitlines()[0] == header


def test_a_sweep_over_seeds_alone_plots_against_the_seed(tmp_path, seed_sweep, entry):
    gpt_only = tmp_path / "gpt_only"
    for job in seed_sweep.iterdir():
        if "model=gpt\n" in (job / ".hydra" / "overrides.yaml").read_text():
            shutil.copytree(job, gpt_only / job.name)
    result = entry("report", str(gpt_only), "metrics=[val/loss]")  # a bare path: sweep_dir=
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| job | seed | val/loss |"
    assert f"skipping {gpt_only / '6'}: it has no metrics.json" in result.stdout  # the dead job
    assert (gpt_only / "report" / "report.png").is_file()
    assert not (gpt_only / "report" / "summary.csv").exists()


def png_size(path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return width, height


def test_many_metrics_make_a_grid_of_at_most_four_columns(tmp_path):
    sweep = tmp_path / "sweep"
    names = [f"val/m{i}" for i in range(14)]
    for num, ratio in enumerate([0.0625, 0.125, 0.25]):
        job = sweep / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"keep_ratio={ratio}"]))
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"keep_ratio": ratio}))
        metrics = {m: i * ratio for i, m in enumerate(names)}
        (job / "metrics.json").write_text(json.dumps({"final": metrics, "best": metrics}))
    width, height = png_size(report(sweep)["plot"])
    panel_w, panel_h = (100 * inches for inches in PANEL_INCHES)  # saved at 100 dpi
    assert width == 4 * panel_w  # 14 panels: 4 columns ...
    assert 4 * panel_h <= height < 5 * panel_h  # ... in 4 rows
    assert png_size(report(sweep, ReportSettings(columns=2))["plot"])[0] == 2 * panel_w


def test_a_second_report_goes_beside_the_first_unless_overwrite(seed_sweep):
    first = report(seed_sweep, ReportSettings(metrics=["val/loss"]))
    assert first["markdown"] == seed_sweep / "report" / "report.md"
    second = report(seed_sweep, ReportSettings(metrics=["val/acc"]))
    assert second["markdown"] == seed_sweep / "report_2" / "report.md"
    assert "val/loss" in first["markdown"].read_text()  # the first is untouched
    third = report(seed_sweep, ReportSettings(metrics=["val/acc"], overwrite=True))
    assert third["markdown"] == first["markdown"] and "val/acc" in third["markdown"].read_text()
    assert not (seed_sweep / "report_3").exists()


def test_a_truncated_metrics_json_is_skipped_with_a_warning_naming_it(seed_sweep, caplog):
    broken = seed_sweep / "0" / "metrics.json"
    broken.write_text(broken.read_text()[:20])  # killed while writing it
    with caplog.at_level(logging.WARNING, logger="wavelab.report"):
        out = report(seed_sweep, ReportSettings(metrics=["val/loss"]))
    assert str(broken) in caplog.text
    jobs = read_csv(out["csv"])
    assert [j["job"] for j in jobs] == ["1", "2", "3", "4", "5"]


def test_learning_rate_ticks_are_few_short_and_only_major(tmp_path):
    """An Optuna lr search: 20 log-uniform values; their ticks must not overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs = [10 ** (-4 + 1.5 * i / 19) for i in range(20)]
    fig, ax = plt.subplots(figsize=PANEL_INCHES)
    ax.plot(lrs, range(20), "o")
    format_x_axis(ax, lrs, numeric=True, log_x=True, categories=[])
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    labels = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
    assert ax.get_xscale() == "log"
    assert 2 <= len(labels) <= 6 and all(len(label) <= 6 for label in labels), labels
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text() in labels]
    assert not any(a.overlaps(b) for a, b in itertools.pairwise(boxes))
    plt.close(fig)


def test_learning_curves_read_each_jobs_csv_log(seed_sweep, caplog):
    """``curves``: one line per job from its csv/metrics.csv; a job without a log is named."""
    for num, loss in enumerate(LOSSES.values()):
        if num == 0:
            continue  # this job wrote no csv log
        log_dir = seed_sweep / str(num) / "csv"
        log_dir.mkdir()
        rows = ["step,val/loss,val/acc"] + [f"{s},{loss + 1 / s}," for s in (10, 20, 30)]
        rows.append("30,,0.5")
        (log_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="wavelab.report"):
        paths = report(seed_sweep, ReportSettings(curves=["val/loss", "val/acc"]))
    assert png_size(paths["curves"])[0] > 0
    assert f"no learning curve for {seed_sweep / '0'}" in caplog.text
    job = next(j for j in load_jobs(seed_sweep) if j.dir == seed_sweep / "1")
    loss = LOSSES[("gpt", 2)]
    assert read_curve(job, "val/loss") == ([10.0, 20.0, 30.0], [loss + 1 / s for s in (10, 20, 30)])
    assert read_curve(job, "val/acc") == ([30.0], [0.5])
    with pytest.raises(ConfigError, match="curves=val/nope is invalid"):
        report(seed_sweep, ReportSettings(curves=["val/nope"], overwrite=True))
