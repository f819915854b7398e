"""The rate–distortion study: the pca and scalar baseline coders, the distortion
metrics, the text coders' reference rates and the frontier report."""

from __future__ import annotations

import json
import lzma
import math
from pathlib import Path

import pytest
import torch
import yaml
from helpers.cli import assert_clean_error
from helpers.tiny_encoder import TINY_VOCAB
from helpers.wavgpt_checkpoint import tiny_module
from scipy import stats

from wavelab.core.checkpoints import load_module
from wavelab.core.errors import ConfigError
from wavelab.run import train
from wavelab.wavgpt.code.sparse_code import overhead_bytes
from wavelab.wavgpt.config import WavGPTConfig
from wavelab.wavgpt.metrics.distortion import (
    exact_blocks,
    mean_pool,
    pairwise_spearman,
    pooled_cosine,
    recall_at_k,
)
from wavelab.wavgpt.metrics.text_rates import lzma_extreme, reference_bits_per_token
from wavelab.wavgpt.model.baselines import PCACore, ScalarCore

pytestmark = pytest.mark.usefixtures("single_thread")

# --- distortion metrics on hand-made tensors -------------------------------------------------


def test_mean_pool_and_cosine_count_real_tokens_only():
    h = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])  # the last step is padding
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pool(h, mask), torch.tensor([[2.0, 0.0]]))
    decoded = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [5.0, 5.0]]])  # orthogonal on real tokens
    assert pooled_cosine(decoded, h, mask).item() == pytest.approx(0.0, abs=1e-7)
    halfway = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]])
    assert pooled_cosine(halfway, h, mask).item() == pytest.approx(1 / math.sqrt(2))


def test_exact_blocks_needs_every_real_token_and_ignores_padding():
    ids = torch.tensor([[1, 2, 0], [1, 2, 0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    predicted = torch.tensor([[1, 2, 3], [1, 3, 0]])  # block 0: only padding wrong
    logits = torch.nn.functional.one_hot(predicted, 4).float()
    assert exact_blocks(logits.argmax(-1), ids, mask).tolist() == [1.0, 0.0]


def test_recall_at_k():
    torch.manual_seed(0)
    original = torch.randn(16, 8)
    assert recall_at_k(original.clone(), original, 1).item() == 1.0
    swapped = original[[1, 0, *range(2, 16)]]  # blocks 0 and 1 decode as each other
    assert recall_at_k(swapped, original, 1).item() == 14 / 16
    assert recall_at_k(swapped, original, 16).item() == 1.0  # every original is in the top 16
    same = torch.ones(4, 8)  # every block alike: no block can be told apart, none is recalled
    assert recall_at_k(same, same, 1).item() == 0.0
    assert recall_at_k(same, same, 4).item() == 1.0  # N <= k: every block scores


def test_recall_at_k_counts_the_own_rank_exactly_in_any_chunking():
    torch.manual_seed(1)
    original = torch.randn(50, 6)
    decoded = original + 0.8 * torch.randn(50, 6)
    sim = (
        torch.nn.functional.normalize(decoded, dim=-1)
        @ torch.nn.functional.normalize(original, dim=-1).T
    )
    rank = (sim > sim.diagonal()[:, None]).sum(1)  # others strictly closer (no ties here)
    for k in (1, 3, 10):
        expected = (rank < k).float().mean().item()
        assert recall_at_k(decoded, original, k).item() == pytest.approx(expected)
        assert recall_at_k(decoded, original, k, rows=7).item() == pytest.approx(expected)


def test_pairwise_spearman_matches_scipy():
    torch.manual_seed(2)
    original = torch.randn(40, 8)
    decoded = original + 0.5 * torch.randn(40, 8)
    unit_d, unit_o = (torch.nn.functional.normalize(e, dim=-1) for e in (decoded, original))
    i, j = torch.triu_indices(40, 40, offset=1)
    expected = stats.spearmanr((unit_d[i] * unit_d[j]).sum(-1), (unit_o[i] * unit_o[j]).sum(-1))
    assert pairwise_spearman(decoded, original).item() == pytest.approx(expected[0], abs=1e-6)
    chunked = pairwise_spearman(decoded, original, pairs_at_once=7)  # 780 pairs, 112 chunks
    assert chunked.item() == pytest.approx(expected[0], abs=1e-6)
    assert pairwise_spearman(original, original).item() == pytest.approx(1.0)
    sampled = pairwise_spearman(decoded, original, max_pairs=500)  # drawn pairs, not all 780
    assert sampled.item() == pytest.approx(expected[0], abs=0.1)
    with pytest.raises(ValueError, match="too few"):
        pairwise_spearman(original[:2], original[:2])


def test_reference_rates_of_text_coders():
    texts = ["to be or not to be"] * 8
    rates = reference_bits_per_token(texts, n_tokens=8 * 8, vocab_size=1024)
    assert rates["ids"] == 10.0
    for name in ("lzma", "zlib", "bz2", "zstd"):
        # one compressor over the repetitive split beats eight separate blocks, headers and all
        assert 0 < rates[f"{name}_split"] < rates[f"{name}_block"]
    with pytest.raises(ValueError, match="n_tokens=0"):
        reference_bits_per_token(texts, 0, 1024)


@pytest.mark.parametrize("size", [1, 300, 5_000, 200_000])
def test_lzma_with_a_small_dictionary_is_as_short_as_preset_9(size):
    words = [f"w{(i * 7919) % 1000}" for i in range(size)]
    data = " ".join(words).encode()[:size]
    assert len(lzma_extreme(data)) == len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    assert lzma.decompress(lzma_extreme(data)) == data


# --- the baseline cores ----------------------------------------------------------------------


def core_config(**overrides) -> WavGPTConfig:
    return WavGPTConfig(block_size=16, refine_layers=1, refine_heads=2, **overrides)


def test_pca_fits_the_principal_directions_and_refuses_to_run_unfitted():
    torch.manual_seed(0)
    core = PCACore(core_config(coder="pca", pca_rank=2, refine=False), d=6)
    h = torch.randn(4, 16, 6) * torch.tensor([5.0, 0.1, 3.0, 0.1, 0.1, 0.1]) + 7.0
    mask = torch.ones(4, 16, dtype=torch.bool)
    mask[:, 12:] = False
    with pytest.raises(RuntimeError, match="not fitted"):
        core(h, mask)
    h_padded = h.clone()
    h_padded[:, 12:] = 1e6  # padding must not move the fit
    core.fit(h_padded, mask)
    assert core.fitted
    assert core.mean == pytest.approx(h[:, :12].reshape(-1, 6).mean(0), abs=1e-5)
    # The two high-variance axes, largest first, sign fixed positive.
    assert core.basis.abs().argmax(0).tolist() == [0, 2]
    assert (core.basis.gather(0, torch.tensor([[0, 2]])) > 0.99).all()
    out = core(h, mask)
    assert out.code.coeffs.shape == (4, 16, 2) and out.refined.shape == (4, 16, 6)
    assert out.code.k.tolist() == [2 * 12] * 4 and out.code.keep_ratio[0].item() == pytest.approx(
        2 / 6
    )
    assert torch.all(out.unrefined[:, 12:] == 0)
    # What the projection loses is the low-variance axes: small against the signal.
    error = (out.unrefined - h)[:, :12].pow(2).mean() / (h[:, :12] - core.mean).pow(2).mean()
    assert error < 0.01


def test_pca_rank_is_checked_against_the_encoder_width():
    with pytest.raises(ConfigError, match=r"model.pca_rank=7 is invalid: .*d=6"):
        PCACore(core_config(coder="pca", pca_rank=7), d=6)
    with pytest.raises(ConfigError, match=r"model.pca_rank=0 is invalid"):
        core_config(pca_rank=0)
    with pytest.raises(ConfigError, match=r"model.coder='zip' is invalid: .*'wavelet', 'pca'"):
        core_config(coder="zip")


@pytest.mark.parametrize("bits", [4, 8, 16])
def test_scalar_codes_every_coefficient_and_counts_its_bits(bits):
    torch.manual_seed(0)
    core = ScalarCore(core_config(coder="scalar", refine=False, value_bits=bits), d=8)
    h = torch.randn(2, 16, 8, requires_grad=True)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 10:] = False
    out = core(h, mask)
    assert out.code.k.tolist() == [16 * 8, 10 * 8]
    # Per-token absmax scale: every value within half a quantization step (fp16 at 16 bits).
    step = h.detach().abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)
    tolerance = 1e-3 if bits == 16 else 0.5 * step * (1 + 2**-9)
    real = mask[..., None]
    assert torch.all(((out.unrefined - h).abs() <= tolerance) | ~real)
    out.refined.sum().backward()  # straight-through: the identity's gradient on real tokens
    assert torch.equal(h.grad, real.expand_as(h).float())
    scales = 0 if bits == 16 else 16 * 16
    header = 8 * overhead_bytes(2)  # a 2-byte encoder fingerprint
    assert core.bits(out.code, 2)[0].item() == header + 16 * 8 * bits + scales


def test_pca_block_mean_sends_what_the_decoded_block_mean_misses():
    torch.manual_seed(0)
    h = torch.randn(4, 16, 6) * torch.tensor([5.0, 0.1, 3.0, 0.1, 0.1, 0.1]) + 7.0
    h[..., 4] += torch.tensor([-1.0, -0.3, 0.3, 1.0])[:, None]  # each block's own offset
    mask = torch.ones(4, 16, dtype=torch.bool)
    mask[:, 12:] = False
    mask[0, 5:] = False
    real = mask[..., None].float()

    def block_means(x):
        return (x * real).sum(1) / real.sum(1)

    cores, outs = {}, {}
    for sent in (False, True):
        config = core_config(
            coder="pca", pca_rank=2, refine=False, value_bits=8, pca_block_mean=sent
        )
        cores[sent] = PCACore(config, d=6)
        cores[sent].fit(h, mask)
        outs[sent] = cores[sent](h, mask)
    plain, with_mean = outs[False], outs[True]
    missed = block_means(plain.unrefined) - block_means(h)
    assert missed[:, 4].abs().max() > 0.5  # rank 2 keeps axes 0 and 2: the offsets are lost
    # Sent at 8 bits with one scale per block: each mean within half a quantization step.
    step = missed.abs().amax(-1, keepdim=True) / 127
    error = (block_means(with_mean.unrefined) - block_means(h)).abs()
    assert torch.all(error <= 0.5 * step * (1 + 2**-9) + 1e-5)
    # The coordinates are unchanged; every real state of a block moved by the same vector.
    assert torch.equal(with_mean.code.values, plain.code.values)
    shift = with_mean.unrefined - plain.unrefined
    assert torch.allclose(shift, shift[:, :1] * real, atol=1e-5)
    # d more values and one more scale per code.
    assert (with_mean.code.k - plain.code.k).tolist() == [6] * 4
    extra = cores[True].bits(with_mean.code, 2) - cores[False].bits(plain.code, 2)
    assert extra.tolist() == [6 * 8 + 16] * 4


@pytest.mark.parametrize("mean_bits", [4, 16])
def test_pca_block_mean_bits_sets_the_means_width_alone(mean_bits):
    """The mean at other bits than the 8-bit coordinates: its error and its bits follow
    ``pca_block_mean_bits``; the coordinates do not move."""
    torch.manual_seed(1)
    h = torch.randn(3, 10, 6) + torch.tensor([-2.0, 0.5, 3.0])[:, None, None]
    mask = torch.ones(3, 10, dtype=torch.bool)
    cores, outs = {}, {}
    for sent, bits in ((False, None), (True, None), (True, mean_bits)):
        config = core_config(
            coder="pca",
            pca_rank=2,
            refine=False,
            value_bits=8,
            pca_block_mean=sent,
            pca_block_mean_bits=bits,
        )
        cores[sent, bits] = PCACore(config, d=6)
        cores[sent, bits].fit(h, mask)
        outs[sent, bits] = cores[sent, bits](h, mask)
    missed = outs[False, None].unrefined.mean(1) - h.mean(1)  # (3, 6)
    error = {key: (out.unrefined.mean(1) - h.mean(1)).abs() for key, out in outs.items()}
    levels = {4: 7, 16: None}[mean_bits]
    if levels:  # within half a 4-bit step of the vector, and coarser than at 8 bits
        step = missed.abs().amax(-1, keepdim=True) / levels
        assert torch.all(error[True, mean_bits] <= 0.5 * step * (1 + 2**-9) + 1e-5)
        assert error[True, mean_bits].max() > error[True, None].max()
    else:  # fp16: far finer than the 8-bit step
        assert error[True, mean_bits].max() < error[True, None].max() / 10
    assert torch.equal(outs[True, mean_bits].code.values, outs[False, None].code.values)
    extra = cores[True, mean_bits].bits(outs[True, mean_bits].code, 2) - cores[False, None].bits(
        outs[False, None].code, 2
    )
    scale = 16 if mean_bits < 16 else 0
    assert extra.tolist() == [6 * mean_bits + scale] * 3


def test_pca_block_mean_bits_outside_4_8_16_is_refused():
    with pytest.raises(ConfigError, match=r"model\.pca_block_mean_bits=6 is invalid"):
        core_config(coder="pca", pca_block_mean=True, pca_block_mean_bits=6)


def test_pca_bits_are_header_values_and_one_scale_per_component():
    core = PCACore(core_config(coder="pca", pca_rank=3, value_bits=4), d=8)
    core.fit(torch.randn(2, 16, 8), torch.ones(2, 16, dtype=torch.bool))
    mask = torch.arange(16)[None, :] < 10  # 10 real tokens
    code = core.code(torch.randn(1, 16, 8), mask)
    assert code.k.item() == 3 * 10
    assert core.bits(code, 2).item() == 8 * overhead_bytes(2) + 30 * 4 + 3 * 16


# --- through the real config, Lightning and the CLI ------------------------------------------


@pytest.mark.parametrize("coder", ["pca", "pca_mean", "scalar"])
def test_baselines_train_through_the_config(make_cfg, coder):
    block_mean = coder == "pca_mean"
    coder = coder.removesuffix("_mean")
    cfg = make_cfg(
        "model=wavgpt",
        f"model.coder={coder}",
        "model.pca_rank=4",
        "model.value_bits=8",
        f"model.pca_block_mean={block_mean}",
    )
    metrics = train(cfg)
    if block_mean:  # the decoded block mean is the original's, up to 8-bit rounding
        assert metrics["val/cosine_unrefined"] > 0.999
    for key in ("val/acc", "val/exact_blocks", "val/cosine", "val/recall_at_1", "train/loss"):
        assert math.isfinite(metrics[key]), key
    # one estimator (total bits over total tokens), the mean of the blocks' rates beside it
    assert metrics["val/bits_per_token_block_mean"] > 0
    assert metrics["val/bits_per_token"] != metrics["val/bits_per_token_block_mean"]
    for key in ("val/cosine_unrefined", "val/recall_at_1_unrefined", "val/recall_at_10"):
        assert 0 <= metrics[key] <= 1 + 1e-6, key
    assert metrics["val/recall_at_1"] <= metrics["val/recall_at_10"]
    for key in ("val/spearman", "val/spearman_unrefined"):
        assert -1 <= metrics[key] <= 1, key
    for bits in (1, 4, 8, 16):  # the two-part reference, on the same blocks
        two_part = {k.split("/")[-1]: v for k, v in metrics.items() if f"two_part_{bits}bit/" in k}
        assert two_part["acc"] == two_part["exact_blocks"] == 1.0
        assert two_part["bits_per_token"] > metrics["ref/lzma_block_bits_per_token"]
        assert two_part["cosine"] == two_part["cosine_unrefined"] <= 1 + 1e-6
    assert metrics["val/cosine_unrefined"] != metrics["val/cosine"]  # read before the refiner
    assert 0 <= metrics["val/exact_blocks"] <= metrics["val/exact_blocks_orig"] == 1.0
    assert metrics["ref/ids_bits_per_token"] == pytest.approx(math.log2(len(TINY_VOCAB)))
    d = 32  # the tiny encoder's width
    values_per_token = {"pca": 4, "scalar": d}[coder]  # sent at 8 bits, plus header and scales
    assert metrics["val/bits_per_token"] > 8 * values_per_token
    if coder == "pca":
        ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        assert state["core.fitted"] and state["core.basis"].shape == (d, 4)
        module = load_module(str(ckpt))  # the basis comes back with the checkpoint
        assert module.core.fitted and torch.equal(module.core.basis, state["core.basis"])


def test_without_a_refiner_both_embeddings_are_the_inverse_transforms(make_cfg):
    """model.refine=false decodes the code by the inverse transform alone, so the embedding read
    before the refiner (*_unrefined) must be the very one read after it; the embedding loss
    trains through that path too."""
    metrics = train(make_cfg("model=wavgpt", "model.refine=false", "model.embedding_weight=1.0"))
    assert metrics["val/cosine_unrefined"] == metrics["val/cosine"] < 1
    assert metrics["val/recall_at_1_unrefined"] == metrics["val/recall_at_1"]
    assert metrics["val/acc_unrefined"] == metrics["val/acc"]


def test_pca_fits_once_and_a_fitted_basis_is_kept(tiny_encoder_dir):
    from helpers.wavgpt_checkpoint import blocks

    module = tiny_module(tiny_encoder_dir, coder="pca", pca_rank=4)
    module.fit_coder(_batches(blocks(8)))  # outside a Trainer: nothing to broadcast
    basis = module.core.basis.clone()
    assert module.core.fitted
    state = module.state_dict()
    fresh = tiny_module(tiny_encoder_dir, coder="pca", pca_rank=4)
    assert not fresh.core.fitted
    fresh.load_state_dict(state)
    assert fresh.core.fitted and torch.equal(fresh.core.basis, basis)


def _batches(items):
    return [
        {k: torch.stack([b[k] for b in items[i : i + 4]]) for k in items[0]}
        for i in range(0, len(items), 4)
    ]


def test_the_codec_refuses_a_baseline(tiny_encoder_dir):
    from wavelab.wavgpt.codec.api import WavGPTCodec

    module = tiny_module(tiny_encoder_dir, coder="scalar")
    with pytest.raises(ConfigError, match=r"model.coder='scalar'.*wavelet codes only"):
        WavGPTCodec(module)


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("model.coder=zip", ["model.coder='zip'", "wavelet"]),
        ("model.pca_rank=0", ["model.pca_rank=0"]),
        ("model.pca_rank=33", ["model.pca_rank=33", "d=32"]),  # the tiny encoder's width
    ],
)
def test_bad_coder_settings_are_one_clear_error(
    entry, corpus_file, tiny_encoder_dir, override, names
):
    result = entry(
        "run",
        "model=wavgpt",
        f"model.encoder.name_or_path={tiny_encoder_dir}",
        f"data.path={corpus_file}",
        "data.block_size=32",
        "model.coder=pca",
        override,
    )
    assert_clean_error(result, *names)


# --- the frontier report ---------------------------------------------------------------------

# (method, point) -> (bits per token, accuracy); seeds add +-0.01 to the accuracy
FRONTIER = {
    ("wavgpt", "r1"): (20.0, 0.30),
    ("wavgpt", "r2"): (200.0, 0.60),
    ("pca", "r1"): (22.0, 0.20),
    ("pca", "r2"): (210.0, 0.40),
}


def test_frontier_report_on_a_sweep_of_methods_rates_and_seeds(tmp_path, entry):
    sweep = tmp_path / "multiruns"
    for num, ((method, point), (bits, acc)) in enumerate(FRONTIER.items()):
        for seed in (1, 2, 3):
            job = sweep / f"t{seed}" / str(num)  # one folder per command, as the study writes
            (job / ".hydra").mkdir(parents=True)
            overrides = [f"study_method={method}", f"study_point={point}", f"seed={seed}"]
            (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed}))
            metrics = {
                "val/bits_per_token": bits,
                "val/acc": acc + (seed - 2) / 100,
                "val/acc_orig": 0.8,
                "val/cosine": 0.9,
                "ref/lzma_block_bits_per_token": 30.0,
                **{f"ref/two_part_{b}bit/bits_per_token": 30.0 + 8 * b for b in (1, 8)},
                **{f"ref/two_part_{b}bit/acc": 1.0 for b in (1, 8)},
            }
            (job / "metrics.json").write_text(json.dumps({"final": metrics, "best": metrics}))
    result = entry(
        "report",
        str(sweep),
        "x=val/bits_per_token",
        "lines=study_method",
        "metrics=[val/acc,val/cosine]",
        "references=[ref/lzma_block_bits_per_token]",
        "ceilings={val/acc:val/acc_orig,val/cosine:1}",
        "reference_lines={two_part:[ref/two_part_1bit,ref/two_part_8bit]}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = sweep / "report"
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("study_method,study_point,n,val/bits_per_token mean")
    assert rows[1].startswith("pca,r1,3,22.0,0.0,0.2") and rows[4].startswith("wavgpt,r2,3,200.0")
    assert "| ref/lzma_block_bits_per_token | 30 |" in (out / "report.md").read_text()
    # the two-part points: 38 and 94 bits per token, tokens 1.0, no cosine logged
    assert "| two_part | ref/two_part_8bit | 94 | 1 |  |" in (out / "report.md").read_text()
    bad_line = entry(
        "report", str(sweep), "x=val/bits_per_token", "reference_lines={two_part:[ref/nope]}"
    )
    assert_clean_error(bad_line, "reference_lines", "ref/nope/bits_per_token")
    bad = entry("report", str(sweep), "x=val/bits_per_token", "lines=method")
    assert_clean_error(bad, "lines=method", "study_method")
    # What bash makes of an unquoted ceilings={a:b,c:d}: two arguments, the last one a string.
    split = entry("report", str(sweep), "ceilings=val/acc:val/acc_orig", "ceilings=val/cosine:1")
    assert_clean_error(split, "ceilings=val/cosine:1", "mapping", "quote")
