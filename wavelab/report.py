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
(``ceilings={val/acc:val/acc_orig,val/cosine:1}``). ``reference_lines`` draw reference methods
that log their own rate and distortion under one prefix each (the two-part code:
``'reference_lines={two_part:[ref/two_part_1bit,ref/two_part_8bit]}'``).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from wavelab.core.cli import bare_word_as, hydra_entry
from wavelab.core.errors import ConfigError
from wavelab.reporting.sweep import ReportSettings, report

log = logging.getLogger("wavelab.report")


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
    settings = ReportSettings(
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
        reference_lines=as_mapping(cfg.reference_lines, "reference_lines"),
        curves=as_list(cfg.curves),
    )
    paths = report(cfg.sweep_dir, settings)
    print(paths["markdown"].read_text())
    for path in paths.values():
        log.info("wrote %s", path)


def main() -> None:
    bare_word_as("sweep_dir")
    report_entry()


if __name__ == "__main__":
    main()
