import numpy as np
import pytest
import pywt
import torch
from helpers.wavgpt_batches import randomize_lifting_

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.config import WavGPTConfig, max_levels
from wavelab.wavgpt.model.lifting import LiftingDWT, band_index


@pytest.mark.parametrize(("T", "levels"), [(2, 1), (8, 3), (32, 5), (48, 2), (256, 8)])
def test_inverse_is_exact_for_random_parameters(T, levels):
    dwt = randomize_lifting_(LiftingDWT(d=6, block_size=T, levels=levels).double(), seed=T)
    x = torch.randn(3, T, 6, dtype=torch.float64)
    coeffs = dwt(x)
    assert not torch.allclose(coeffs, LiftingDWT(6, T, levels).double()(x))  # really not Haar
    torch.testing.assert_close(dwt.inverse(coeffs), x, rtol=0, atol=1e-10)
    # float32 too, at float32 rounding
    torch.testing.assert_close(
        dwt.float().inverse(dwt.float()(x.float())), x.float(), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(("T", "levels"), [(8, 1), (8, 3), (64, 4), (96, 5)])
def test_haar_init_matches_pywt_band_by_band(T, levels):
    dwt = LiftingDWT(d=5, block_size=T, levels=levels).double()
    x = torch.randn(2, T, 5, dtype=torch.float64)
    coeffs = dwt(x).detach().numpy()
    expected = pywt.wavedec(x.numpy(), "haar", level=dwt.levels, axis=1)  # [cA_L, cD_L, ..., cD_1]
    bands = band_index(T, dwt.levels).numpy()
    assert len(expected) == dwt.num_bands
    for b, band in enumerate(expected):
        assert (bands == b).sum() == band.shape[1]
        # the parameters are float32 (sqrt(2) = exp(log_scale) to ~1e-8), the signal float64
        np.testing.assert_allclose(coeffs[:, bands == b], band, rtol=1e-7, atol=1e-7)


def test_haar_init_is_orthonormal():
    dwt = LiftingDWT(d=4, block_size=32, levels=5)
    x = torch.randn(2, 32, 4)
    torch.testing.assert_close(dwt(x).norm(dim=1), x.norm(dim=1))


def test_band_layout_is_coarsest_first():
    assert band_index(16, 3).tolist() == [0, 0, 1, 1, 2, 2, 2, 2] + [3] * 8
    assert [max_levels(n) for n in (256, 96, 2, 7)] == [8, 5, 1, 0]


def test_fixed_haar_has_buffers_not_parameters():
    dwt = LiftingDWT(d=4, block_size=16, levels=4, learnable=False)
    assert list(dwt.parameters()) == []
    assert {"predict", "update", "log_approx_scale", "log_detail_scale"} <= set(dwt.state_dict())
    learnable = LiftingDWT(d=4, block_size=16, levels=4)
    assert all(p.requires_grad for p in learnable.parameters())
    x = torch.randn(1, 16, 4)
    torch.testing.assert_close(dwt(x), learnable(x))


def test_padding_only_coefficients_are_zero_and_outside_support():
    dwt = randomize_lifting_(LiftingDWT(d=3, block_size=16, levels=4))
    mask = torch.tensor([[1] * 16, [1] * 5 + [0] * 11, [1] * 9 + [0] * 7])
    coeffs = dwt(torch.randn(3, 16, 3) * mask[..., None])
    support = dwt.support_mask(mask)
    assert (coeffs[~support] == 0).all()
    assert (coeffs[support] != 0).all()
    assert support[0].all() and support.sum(1).tolist()[1:] == [
        1 + 1 + 1 + 2 + 3,
        1 + 1 + 2 + 3 + 5,
    ]


def test_bad_levels_raise_clear_errors():
    with pytest.raises(
        ConfigError, match=r"model\.block_size=100 is not divisible by 2\*\*model\.levels=8"
    ):
        WavGPTConfig(block_size=100, levels=3)
    with pytest.raises(ConfigError, match=r"model\.block_size=7 .* even"):
        WavGPTConfig(block_size=7)
    with pytest.raises(ConfigError, match=r"model\.levels=0"):
        WavGPTConfig(block_size=8, levels=0)
    assert WavGPTConfig(block_size=96).resolved_levels == 5
    with pytest.raises(ValueError, match="T=12 is not divisible by 2\\*\\*levels=8"):
        LiftingDWT(d=4, block_size=16, levels=3)(torch.randn(1, 12, 4))
