"""fp16_ceil is a true ceiling over fp16's whole range, subnormals included, checked against
numpy's float16 as the reference rounding."""

from __future__ import annotations

import numpy as np
import torch

from wavelab.wavgpt.code.quantize import FP16_MAX, fp16_ceil


def reference_ceil(x: np.ndarray) -> np.ndarray:
    """The smallest float16 >= x (x float32), by numpy: round, then step up if below x."""
    near = np.minimum(x, FP16_MAX).astype(np.float16)
    with np.errstate(over="ignore"):  # the step above fp16's largest value is inf: never taken
        up = np.nextafter(near, np.float16(np.inf))
    return np.where(near.astype(np.float32) < np.minimum(x, FP16_MAX), up, near).astype(np.float32)


def check(x: np.ndarray) -> None:
    x = x.astype(np.float32)
    got = fp16_ceil(torch.from_numpy(x)).numpy()
    capped = np.minimum(x, FP16_MAX)
    assert (got >= capped).all(), x[got < capped][:5]
    assert (got.astype(np.float16).astype(np.float32) == got).all()  # an fp16 value
    with np.errstate(over="ignore"):
        below = np.nextafter(got.astype(np.float16), np.float16(-np.inf)).astype(np.float32)
    assert ((below < capped) | (got == 0)).all()  # and the smallest such
    np.testing.assert_array_equal(got, reference_ceil(x))


def test_the_cases_that_rounded_down_are_ceilings():
    got = fp16_ceil(torch.tensor([1e-8, 1.1456e-5, 3e-8])).tolist()
    assert got[0] > 0 and got[0] == 2.0**-24
    assert got[1] >= 1.1456e-5
    assert got[2] >= 3e-8
    check(np.array([1e-8, 1.1456e-5, 3e-8]))


def test_a_ceiling_in_the_subnormal_range():
    rng = np.random.default_rng(0)
    check(rng.uniform(0, 2.0**-14, 20_000))
    check(np.exp(rng.uniform(np.log(1e-12), np.log(2.0**-14), 20_000)))


def test_a_ceiling_over_the_normal_range_and_at_its_ends():
    rng = np.random.default_rng(1)
    check(np.exp(rng.uniform(np.log(2.0**-14), np.log(FP16_MAX), 20_000)))
    check(np.array([0.0, FP16_MAX, 1e6, 2.0**-24, 2.0**-14]))
    assert fp16_ceil(torch.tensor([1e6])).item() == FP16_MAX  # clamped, as documented


def test_every_fp16_value_is_its_own_ceiling():
    every = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(fp16_ceil(torch.from_numpy(every)).numpy(), every)
