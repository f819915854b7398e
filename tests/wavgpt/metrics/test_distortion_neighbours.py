"""Neighbour preservation: 1 for the originals themselves, chance for noise, and it falls as a
code blurs close blocks apart, which recall@k does not see."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wavelab.wavgpt.metrics.distortion import neighbour_preservation, recall_at_k


def test_neighbour_preservation_by_enumeration():
    torch.manual_seed(0)
    original = F.normalize(torch.randn(300, 16), dim=-1)
    assert neighbour_preservation(original, original, rows=64).item() == 1.0
    noise = torch.randn(300, 16)
    assert neighbour_preservation(noise, original).item() < 0.15  # chance is 10/299
    # a brute-force reference on a small set
    small, blurred = original[:40], original[:40] + 0.3 * torch.randn(40, 16)
    sim_o, sim_d = small @ small.T, F.normalize(blurred, dim=-1) @ F.normalize(blurred, dim=-1).T
    expected = 0.0
    for i in range(40):
        order_o = [j for j in sim_o[i].argsort(descending=True).tolist() if j != i][:5]
        order_d = [j for j in sim_d[i].argsort(descending=True).tolist() if j != i][:5]
        expected += len(set(order_o) & set(order_d)) / 5 / 40
    assert neighbour_preservation(blurred, small, k=5, rows=7).item() == pytest.approx(expected)


def test_a_small_blur_keeps_recall_at_1_but_not_the_neighbours():
    torch.manual_seed(1)
    original = F.normalize(torch.randn(500, 32), dim=-1)
    blurred = original + 0.05 * torch.randn(500, 32)
    assert recall_at_k(blurred, original, 1).item() == 1.0
    assert neighbour_preservation(blurred, original).item() < 0.9


def test_k_must_leave_room():
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="k=5"):
        neighbour_preservation(x, x, k=5)
