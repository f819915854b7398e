"""What a finished run dir holds, read for comparisons between two runs."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import torch


def csv_rows(run: Path) -> collections.Counter:
    """Every csv/metrics.csv row (its non-empty cells), counted: a row logged twice counts 2."""
    with open(run / "csv" / "metrics.csv", newline="") as f:
        return collections.Counter(
            tuple(sorted((k, v) for k, v in row.items() if v != "")) for row in csv.DictReader(f)
        )


def weights(run: Path) -> dict[str, torch.Tensor]:
    """The state dict of the run's last.ckpt."""
    path = run / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights_and_rows(run: Path, reference: Path) -> None:
    """``run`` ended with ``reference``'s exact weights and logged each of its rows once."""
    got, want = weights(run), weights(reference)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    rows, want_rows = csv_rows(run), csv_rows(reference)
    assert max(rows.values()) == 1, "a metrics.csv row appears twice"
    assert rows == want_rows, f"missing: {want_rows - rows}\nextra: {rows - want_rows}"
