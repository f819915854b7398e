import math

import pytest
import torch
import torch.nn.functional as F
from helpers.wavgpt_batches import (
    randomize_lifting_,
    small_config,
    tiny_batch,
    tiny_encoder,
)

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.config import WavGPTConfig
from wavelab.wavgpt.model.core import WavGPTCore
from wavelab.wavgpt.model.filter import FrequencyFilter
from wavelab.wavgpt.model.losses import distillation_loss, token_accuracy
from wavelab.wavgpt.model.refiner import Refiner

pytestmark = pytest.mark.usefixtures("single_thread")

D = 32


def padded_states(
    lengths: list[int], T: int = 16, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random hidden states (B, T, D) with garbage (not zeros) at the padded steps."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    return torch.randn(len(lengths), T, D, generator=g), mask


def test_mask_keeps_exactly_k_per_sample_and_padding_takes_no_budget():
    lengths = [16, 9, 3]
    keep_ratio = 1 / 8
    h, mask = padded_states(lengths)
    core = WavGPTCore(small_config(keep_ratio=keep_ratio), D)
    out = core(h, mask)
    expected_k = [max(1, round(keep_ratio * n * D)) for n in lengths]
    assert out.code.keep.sum(dim=(1, 2)).tolist() == expected_k
    assert out.code.k.tolist() == expected_k
    torch.testing.assert_close(
        out.code.keep_ratio, torch.tensor(expected_k) / (torch.tensor(lengths) * D)
    )
    # nothing is kept whose support is padding only
    support = core.dwt.support_mask(mask)
    assert (out.code.keep * ~support[..., None]).sum() == 0
    # what sits in the padding does not matter at all
    h_other = torch.where(mask[..., None], h, 100 * torch.randn_like(h))
    out_other = core(h_other, mask)
    assert torch.equal(out.code.keep, out_other.code.keep)
    torch.testing.assert_close(out.refined, out_other.refined)


def test_baseline_filter_keeps_top_magnitudes_and_has_no_parameters():
    filt = FrequencyFilter(D, levels=4, keep_ratio=0.25, learned=False)
    assert list(filt.parameters()) == []
    coeffs = torch.randn(2, 16, D)
    mask = torch.ones(2, 16, dtype=torch.bool)
    kept, keep, k, ratio = filt(coeffs, mask, mask)
    flat = coeffs.abs().reshape(2, -1)
    expected = torch.zeros_like(flat).scatter(1, flat.topk(int(k[0]), dim=1).indices, 1.0)
    assert torch.equal(keep.reshape(2, -1), expected)
    assert torch.equal(kept, coeffs * keep)
    assert ratio.tolist() == [0.25, 0.25]


def test_band_importance_inits():
    def importance(init: str) -> torch.Tensor:
        return torch.sigmoid(FrequencyFilter(D, 5, 0.1, init=init).band_importance.detach())

    uniform, dct, low = importance("uniform"), importance("dct_like"), importance("lowpass")
    assert torch.all(uniform == 0.5)
    assert torch.all(dct[1:] < dct[:-1])  # smoothly decreasing with frequency
    assert low[0] > 0.98 and low[2] < 0.02 and low[0] > dct[0]  # approx dominates


def test_gradients_reach_filter_lifting_and_refiner():
    h, mask = padded_states([16, 11])
    core = WavGPTCore(small_config(keep_ratio=0.25), D)
    out = core(h, mask)
    F.mse_loss(out.refined, torch.randn_like(out.refined)).backward()
    for name in (
        "filter.band_importance",
        "filter.dim_importance",
        "filter.log_temperature",
        "dwt.predict",
        "dwt.update",
        "dwt.log_approx_scale",
        "dwt.log_detail_scale",
        "refiner.mlp_scale",
        "refiner.encoder.layers.0.linear2.weight",
    ):
        grad = core.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_refiner_is_identity_at_init_and_when_disabled():
    h, mask = padded_states([16, 5])
    torch.testing.assert_close(Refiner(D, 2, 4, 64)(h, mask), h)
    assert Refiner(D, 2, 4, 64, enabled=False)(h, mask) is h


def test_keep_ratio_one_without_refinement_is_lossless():
    enc = tiny_encoder()
    ids, mask = tiny_batch([16, 11, 6], T=16)
    h = enc.hidden(ids, mask)
    core = WavGPTCore(small_config(keep_ratio=1.0, refine=False), enc.d)
    randomize_lifting_(core.dwt)
    out = core(h, mask)
    real = mask.bool()
    # the transform and filter lose nothing; the code then rounds the values to fp16
    unrounded = core.dwt.inverse(out.code.coeffs * out.code.keep)
    torch.testing.assert_close(unrounded[real], h[real], rtol=1e-4, atol=1e-4)  # float32
    assert torch.equal(out.code.values, (out.code.coeffs * out.code.keep).half().float())
    teacher, student = enc.logits(h), enc.logits(out.refined)
    assert torch.equal(teacher.argmax(-1)[real], student.argmax(-1)[real])
    assert token_accuracy(student.argmax(-1), ids, mask) == token_accuracy(
        teacher.argmax(-1), ids, mask
    )
    _, terms = distillation_loss(student, teacher, ids, mask, core.cfg)
    assert terms["kl"] < 1e-4  # fp16 values: close to, not exactly, the teacher


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    enc = tiny_encoder()
    ids, mask = tiny_batch([16, 12, 9, 16], T=16)
    h = enc.hidden(ids, mask)
    teacher = enc.logits(h)
    assert token_accuracy(teacher.argmax(-1), ids, mask) > 0.95  # a teacher worth imitating
    cfg = small_config(keep_ratio=1 / 8)
    core = WavGPTCore(cfg, enc.d)
    opt = torch.optim.Adam(core.parameters(), lr=3e-3)
    history = []
    for _ in range(150):
        student = enc.logits(core(h, mask).refined)
        loss, terms = distillation_loss(student, teacher, ids, mask, cfg)
        history.append((terms["kl"].item(), token_accuracy(student.argmax(-1), ids, mask).item()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    (kl_start, acc_start), (kl_end, acc_end) = history[0], history[-1]
    assert kl_end < 0.3 * kl_start
    assert acc_end > acc_start + 0.3


def test_distillation_loss_terms():
    torch.manual_seed(0)
    B, T, V = 2, 8, 11
    student, teacher = torch.randn(B, T, V), torch.randn(B, T, V)
    ids = torch.randint(0, V, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 5:] = 0
    cfg = WavGPTConfig(block_size=8, kd_temperature=3.0, logits_mse_weight=0.5, kd="full")
    total, terms = distillation_loss(student, teacher, ids, mask, cfg)
    real = mask.bool()
    kl = F.kl_div(
        F.log_softmax(student[real] / 3, -1), F.log_softmax(teacher[real] / 3, -1),
        reduction="batchmean", log_target=True,
    )  # fmt: skip
    torch.testing.assert_close(terms["kl"], 9 * kl)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(student[real], ids[real]))
    torch.testing.assert_close(terms["logits_mse"], F.mse_loss(student[real], teacher[real]))
    torch.testing.assert_close(
        total, 0.9 * terms["kl"] + 0.1 * terms["ce"] + 0.5 * terms["logits_mse"]
    )
    # padding is ignored: change the student there, nothing moves
    student_pad = torch.where(real[..., None], student, torch.randn_like(student))
    assert torch.equal(distillation_loss(student_pad, teacher, ids, mask, cfg)[0], total)
    # the identical student has zero KL
    assert distillation_loss(teacher, teacher, ids, mask, cfg)[1]["kl"].abs() < 1e-6


def test_mse_terms_need_their_tensors():
    h = torch.randn(1, 8, 4)
    logits, ids, mask = torch.randn(1, 8, 5), torch.zeros(1, 8, dtype=torch.long), torch.ones(1, 8)
    cfg = WavGPTConfig(block_size=8, hidden_mse_weight=1.0, unrefined_mse_weight=1.0)
    with pytest.raises(ValueError, match=r"model\.hidden_mse_weight=1\.0 needs"):
        distillation_loss(logits, logits, ids, mask, cfg)
    _, terms = distillation_loss(
        logits, logits, ids, mask, cfg, refined=h + 1, target_h=h, unrefined=h
    )
    assert math.isclose(terms["hidden_mse"].item(), 1.0) and terms["unrefined_mse"].item() == 0.0


def test_embedding_term_anchors_the_pooled_embedding_only():
    h = torch.randn(2, 8, 4)
    logits, ids = torch.randn(2, 8, 5), torch.zeros(2, 8, dtype=torch.long)
    mask = torch.ones(2, 8)
    mask[1, 5:] = 0
    cfg = WavGPTConfig(block_size=8, kl_weight=0.0, ce_weight=0.0, embedding_weight=2.0)
    with pytest.raises(ValueError, match=r"model\.embedding_weight=2\.0 needs"):
        distillation_loss(logits, logits, ids, mask, cfg)

    def embedding_loss(refined):
        total, terms = distillation_loss(logits, logits, ids, mask, cfg, refined, h)
        torch.testing.assert_close(total, 2 * terms["embedding"])
        return terms["embedding"]

    # the pooled direction is all it sees: scaled states, and states that differ from h but
    # keep each block's mean, cost nothing; the opposite embedding costs the most, 1 - (-1)
    swapped = h.clone()
    swapped[:, [0, 1]] = h[:, [1, 0]]  # two real tokens trade places in both blocks
    assert embedding_loss(3 * h).abs() < 1e-6 and embedding_loss(swapped).abs() < 1e-6
    torch.testing.assert_close(embedding_loss(-h), torch.tensor(2.0))
    # padding is ignored
    padded = torch.where(mask[..., None].bool(), h, torch.randn_like(h))
    assert embedding_loss(padded).abs() < 1e-6
    # a mean over blocks: one block turned around costs half
    one_turned = torch.cat([h[:1], -h[1:]])
    torch.testing.assert_close(embedding_loss(one_turned), torch.tensor(1.0))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"keep_ratio": 0.0}, r"model\.keep_ratio=0\.0 is invalid: must be in \(0, 1\]"),
        ({"keep_ratio": 1.5}, r"model\.keep_ratio=1\.5 is invalid: must be in \(0, 1\]"),
        (
            {"block_size": 100, "levels": 3},
            r"model\.block_size=100 is not divisible by 2\*\*model\.levels=8",
        ),
        ({"block_size": 33}, r"model\.block_size=33 is invalid: it must be even"),
        ({"filter_init": "dct"}, r"model\.filter_init='dct' is invalid: must be one of"),
        ({"kd_temperature": 0}, r"model\.kd_temperature=0 is invalid: must be > 0"),
        ({"dropout": 1.0}, r"model\.dropout=1\.0 is invalid"),
        ({"kl_weight": 0, "ce_weight": 0}, r"at least one loss weight"),
        ({"ce_weight": -1}, r"model\.ce_weight=-1 is invalid: must be >= 0"),
        ({"embedding_weight": -0.5}, r"model\.embedding_weight=-0\.5 is invalid: must be >= 0"),
        ({"kd": "dense"}, r"model\.kd='dense' is invalid: must be one of \('sparse', 'full'\)"),
        ({"kd_top_k": 0}, r"model\.kd_top_k=0 is invalid: must be an integer >= 1"),
        (
            {"recompute_head_logits": "yes"},
            r"model\.recompute_head_logits='yes' is invalid: must be true or false",
        ),
        ({"logits_mse_weight": 1.0}, r"model\.logits_mse_weight=1\.0 needs .* model\.kd=full"),
        ({"value_bits": 3}, r"model\.value_bits=3 is invalid: must be one of \(4, 8, 16\)"),
        ({"value_scale": "row"}, r"model\.value_scale='row' is invalid: must be one of"),
    ],
)
def test_bad_configs_raise_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        WavGPTConfig(**overrides)


@pytest.mark.parametrize(("value_bits", "value_scale"), [(16, "code"), (8, "code"), (4, "band")])
def test_code_is_the_forward_without_the_refiner(value_bits, value_scale):
    core = WavGPTCore(small_config(value_bits=value_bits, value_scale=value_scale), D)
    h, mask = torch.randn(2, 16, D), torch.arange(16)[None, :] < torch.tensor([[16], [9]])
    calls = []
    core.refiner.register_forward_pre_hook(lambda *_: calls.append(1))
    code = core.code(h, mask)
    coeffs, kept, keep, scales = code.coeffs, code.values, code.keep, code.scales
    assert not calls
    out = core(h, mask)
    assert calls and torch.equal(out.code.values, kept) and torch.equal(out.code.keep, keep)
    assert torch.equal(out.code.coeffs, coeffs) and torch.equal(out.code.k, code.k)
    assert torch.equal(core.decode(code), out.unrefined)
    if value_bits == 16:
        assert scales is None and torch.equal(kept, (coeffs * keep).half().float())
    else:  # the integer grid of each scale; straight-through: kept's gradient is the identity
        groups = 1 if value_scale == "code" else core.dwt.levels + 1
        assert scales.shape == (2, groups)
        assert len(torch.unique(kept[0])) <= groups * (2**value_bits - 1)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match=r"model\.refine_heads=5 is invalid: must divide .* d=32"):
        WavGPTCore(small_config(refine_heads=5), D)
    core = WavGPTCore(small_config(), D)
    with pytest.raises(ValueError, match=r"T=32 exceeds model\.block_size=16"):
        core(torch.randn(1, 32, D))
    with pytest.raises(ValueError, match="at least one real token"):
        core(torch.randn(2, 16, D), torch.tensor([[1] * 16, [0] * 16]))
