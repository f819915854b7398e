"""What a report shows: the keys of conf/report.yaml as one object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WHICH = ("final", "best")


@dataclass
class ReportSettings:
    """What to report of a sweep; each field is the conf/report.yaml key of its name."""

    x: str | None = None  # the swept key, or a metric for a frontier; None: the first varying
    metrics: list[str] | None = None  # None: every val/* metric
    baseline: str | None = None  # a metric drawn as a horizontal reference
    baseline_on: list[str] | None = None  # the panels that show it; None: all
    which: str = "final"  # final | best
    out_dir: str | Path | None = None  # None: <sweep dir>/report
    repeats: str | None = "seed"  # the key whose values repeat one setting
    overwrite: bool = False  # write over an earlier report instead of report_2/, ...
    columns: int = 4  # panels per row
    lines: str | None = None  # frontier: one line per value of this key
    references: list[str] | None = None  # frontier: x-metrics drawn as vertical lines
    ceilings: dict[str, str | float] | None = None  # frontier: per panel, a metric or a number
    # frontier: reference methods drawn as lines, {label: [metric prefix, ...]}; the point of
    # prefix P on panel group/M is at (P/<x's name>, P/M)
    reference_lines: dict[str, list[str]] | None = None
    curves: list[str] | None = None  # also curves.png of these metrics against the step
