"""The frozen-teacher cache and sparse KD: exact against the full-vocabulary KD where
it must be, keyed on everything the cached arrays depend on, reused, and safe to build from two
jobs at once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers.cli import REPO, assert_clean_error
from helpers.small import WAVGPT_SMALL
from helpers.wavgpt_batches import small_config, tiny_batch, tiny_encoder

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.data import teacher_cache
from wavelab.wavgpt.model.distill import (
    _ROWS,
    TeacherTopK,
    full_kl,
    sparse_kd_and_ce,
    teacher_topk,
    tied_sparse_kd_and_ce,
)
from wavelab.wavgpt.model.losses import distillation_loss

TAU = 2.0


def sparse_kl(student: torch.Tensor, teacher: TeacherTopK, tau: float) -> torch.Tensor:
    """(B, T) sparse KL by autograd-able formulas: the reference for the fused one."""
    z = student / tau
    log_q = z.gather(-1, teacher.idx) - torch.logsumexp(z, -1)[..., None]
    log_q_rest = torch.log1p(-log_q.exp().sum(-1).clamp(max=1 - 1e-6))
    p_rest = teacher.rest_logp.exp()
    rest = torch.where(p_rest > 0, p_rest * (teacher.rest_logp - log_q_rest), 0.0)
    return (teacher.logp.exp() * (teacher.logp - log_q)).sum(-1) + rest


@pytest.mark.parametrize(("tau", "k"), [(2.0, 5), (2.0, 30), (1.0, 5), (3.0, 12)])
def test_the_fused_sparse_kd_and_ce_match_autograd_in_value_and_gradient(tau, k):
    torch.manual_seed(0)
    t = _ROWS + 3  # the backward's gradient then takes three row chunks, one partial
    teacher, ids = 3 * torch.randn(2, t, 30), torch.randint(0, 30, (2, t))
    top = teacher_topk(teacher, k, tau, ids)
    student = torch.randn(2, t, 30, dtype=torch.float64).float().requires_grad_()
    g_kl, g_ce = torch.randn(2, t), torch.randn(2, t)
    kl_ref = sparse_kl(student.double(), top, tau)
    ce_ref = torch.nn.functional.cross_entropy(
        student.double().transpose(1, 2), ids, reduction="none"
    )
    (grad_ref,) = torch.autograd.grad((kl_ref * g_kl + ce_ref * g_ce).sum(), student)
    kl, ce = sparse_kd_and_ce(student, top, tau, ids)
    (grad,) = torch.autograd.grad((kl * g_kl + ce * g_ce).sum(), student)
    torch.testing.assert_close(kl.double(), kl_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ce.double(), ce_ref, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(grad, grad_ref.float(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("recompute", [True, False])
@pytest.mark.parametrize("tau", [2.0, 3.0])
def test_the_tied_head_s_loss_in_row_chunks_equals_the_loss_of_its_whole_logits(tau, recompute):
    torch.manual_seed(0)
    b, t, d, v, k = 2, _ROWS + 5, 8, 50, 6  # three row chunks, one partial
    weight, ids = torch.randn(v, d), torch.randint(0, v, (b, t))
    top = teacher_topk(torch.randn(b, t, d) @ weight.T, k, tau, ids)
    h = torch.randn(b, t, d, requires_grad=True)
    g_kl, g_ce = torch.randn(b, t), torch.randn(b, t)
    logits = h @ weight.T
    kl_ref, ce_ref = sparse_kd_and_ce(logits, top, tau, ids)
    (grad_ref,) = torch.autograd.grad((kl_ref * g_kl + ce_ref * g_ce).sum(), h)
    kl, ce, predicted = tied_sparse_kd_and_ce(h, weight, top, tau, ids, recompute=recompute)
    (grad,) = torch.autograd.grad((kl * g_kl + ce * g_ce).sum(), h)
    assert torch.equal(predicted, logits.argmax(-1))
    torch.testing.assert_close(kl, kl_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ce, ce_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="must be frozen"):
        tied_sparse_kd_and_ce(h, weight.requires_grad_(), top, tau, ids)


def test_the_tied_head_s_backward_outside_autocast_redoes_the_forward_s_bf16_logits():
    """Lightning runs the forward under autocast and the backward outside it: the backward's
    logits must be the forward's bf16 ones, and the sums float32 (einsum under autocast is
    bf16), or the loss and gradient drift from the whole-logits path's."""
    torch.manual_seed(0)
    b, t, d, v, k, tau = 2, _ROWS + 5, 8, 50, 6, 2.0
    weight, ids = torch.randn(v, d), torch.randint(0, v, (b, t))
    top = teacher_topk(torch.randn(b, t, d) @ weight.T, k, tau, ids)
    h = torch.randn(b, t, d, requires_grad=True)
    g_kl, g_ce = torch.randn(b, t), torch.randn(b, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = h @ weight.T
        kl_ref, ce_ref = sparse_kd_and_ce(logits, top, tau, ids)
        kl, ce, predicted = tied_sparse_kd_and_ce(h, weight, top, tau, ids)
    assert logits.dtype == torch.bfloat16 and torch.equal(predicted, logits.argmax(-1))
    (grad_ref,) = torch.autograd.grad((kl_ref * g_kl + ce_ref * g_ce).sum(), h)
    (grad,) = torch.autograd.grad((kl * g_kl + ce * g_ce).sum(), h)
    kl_fp32, ce_fp32 = sparse_kd_and_ce(logits.float(), top, tau, ids)
    torch.testing.assert_close(kl_ref, kl_fp32, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ce_ref, ce_fp32, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(kl, kl_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ce, ce_ref, atol=1e-6, rtol=1e-6)
    # The reference's gradient passes through a bf16 matmul; this one through a float32 one.
    torch.testing.assert_close(grad, grad_ref, atol=0.05, rtol=0.01)


def reference_topk(logits: torch.Tensor, k: int, tau: float):
    """float64 log-softmax at tau, the top K's log-probabilities and the rest's log-mass."""
    log_p = torch.log_softmax(logits.double() / tau, dim=-1)
    top, idx = log_p.topk(k, dim=-1)
    rest = torch.logsumexp(log_p.scatter(-1, idx, float("-inf")), dim=-1)
    return idx, top, rest


@pytest.mark.parametrize("k", [1, 7, 50])
def test_teacher_topk_matches_a_float64_reference(k):
    torch.manual_seed(0)
    logits = 4 * torch.randn(3, 5, 50)
    ids = torch.randint(0, 50, (3, 5))
    top = teacher_topk(logits, k, TAU, ids)
    idx, logp, rest = reference_topk(logits, k, TAU)
    assert torch.equal(top.idx, idx)
    torch.testing.assert_close(top.logp.double(), logp, atol=1e-6, rtol=0)
    if k < 50:
        torch.testing.assert_close(top.rest_logp.double(), rest, atol=1e-5, rtol=1e-6)
    else:  # K covers the vocabulary: nothing is left
        assert torch.isneginf(top.rest_logp).all()
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
    torch.testing.assert_close(top.ce, ce, atol=1e-5, rtol=0)
    assert torch.equal(top.argmax, logits.argmax(-1))


def test_sparse_kd_equals_full_kd_and_its_gradient_when_k_covers_the_vocabulary():
    torch.manual_seed(0)
    teacher = 3 * torch.randn(2, 6, 40)
    ids = torch.randint(0, 40, (2, 6))
    student = torch.randn(2, 6, 40, requires_grad=True)
    full = full_kl(student, teacher, TAU)
    (g_full,) = torch.autograd.grad(full.sum(), student)
    sparse, _ = sparse_kd_and_ce(student, teacher_topk(teacher, 40, TAU, ids), TAU, ids)
    (g_sparse,) = torch.autograd.grad(sparse.sum(), student)
    torch.testing.assert_close(sparse, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_sparse, g_full, atol=1e-6, rtol=1e-5)


def test_sparse_kd_stays_finite_for_a_student_far_sharper_than_float32_can_exponentiate():
    """A teacher's top-K token 500 logits below the student's peak: exp((z - peak) / tau)
    underflows to 0, yet the KL is finite and equals the full KL (K covers the vocabulary)."""
    torch.manual_seed(0)
    teacher, ids = 3 * torch.randn(1, 3, 20), torch.randint(0, 20, (1, 3))
    student = torch.randn(1, 3, 20)
    student[0, 1, teacher[0, 1].argmax()] -= 500.0
    student.requires_grad_()
    sparse, _ = sparse_kd_and_ce(student, teacher_topk(teacher, 20, TAU, ids), TAU, ids)
    (grad,) = torch.autograd.grad(sparse.sum(), student)
    full = full_kl(student.double(), teacher.double(), TAU)
    assert torch.isfinite(sparse).all() and torch.isfinite(grad).all()
    assert sparse[0, 1] > 50  # the teacher's favourite has no student mass: a large, real KL
    torch.testing.assert_close(sparse.double(), full, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_sparse_kd_is_the_exact_kl_of_the_coarsened_distributions(k):
    """KL over {top K, rest}, computed here in float64 from both full distributions, and never
    more than the full KL (coarsening loses information)."""
    torch.manual_seed(1)
    teacher, student = 3 * torch.randn(2, 4, 30), 2 * torch.randn(2, 4, 30)
    top = teacher_topk(teacher, k, TAU, torch.zeros(2, 4, dtype=torch.long))
    p = torch.softmax(teacher.double() / TAU, -1)
    q = torch.softmax(student.double() / TAU, -1)
    in_top = torch.zeros_like(p, dtype=torch.bool).scatter(-1, top.idx, True)
    p_top, q_top = p.gather(-1, top.idx), q.gather(-1, top.idx)
    p_rest, q_rest = (p * ~in_top).sum(-1), (q * ~in_top).sum(-1)
    coarse = (p_top * (p_top / q_top).log()).sum(-1) + p_rest * (p_rest / q_rest).log()
    sparse, _ = sparse_kd_and_ce(student, top, TAU, top.idx[..., 0])
    torch.testing.assert_close(sparse.double(), coarse, atol=2e-5, rtol=1e-4)
    assert (sparse <= full_kl(student, teacher, TAU) + 1e-5).all()


def test_the_distillation_loss_takes_either_teacher():
    torch.manual_seed(0)
    cfg = small_config()
    teacher = 3 * torch.randn(2, 16, 30)
    student = torch.randn(2, 16, 30)
    ids, mask = torch.randint(0, 30, (2, 16)), torch.ones(2, 16)
    full, full_terms = distillation_loss(student, teacher, ids, mask, cfg)
    top = teacher_topk(teacher, 30, cfg.kd_temperature, ids)
    sparse, sparse_terms = distillation_loss(student, top, ids, mask, cfg)
    torch.testing.assert_close(sparse, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sparse_terms["ce"], full_terms["ce"])


# --- the cache ----------------------------------------------------------------------------------


def blocks(n: int = 10, T: int = 16, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    ids, mask = tiny_batch([T - i % 4 for i in range(n)], T, seed=seed)
    split = (ids.numpy(), mask.sum(1).numpy())
    return {"train": split, "val": split}


def test_the_cache_holds_what_the_live_teacher_computes(tmp_path):
    encoder = tiny_encoder()
    token_entry = tmp_path / "tokens" / "corpus-tok"
    splits = blocks()
    entry, meta = teacher_cache.load_or_build(tmp_path, token_entry, splits, encoder, 8, TAU)
    arrays = teacher_cache.open_split(entry, meta, "train")
    ids, lengths = splits["train"]
    ids = torch.from_numpy(ids)
    mask = (torch.arange(16)[None, :] < torch.from_numpy(lengths)[:, None]).long()
    h = encoder.hidden(ids, mask)
    live = teacher_topk(encoder.logits(h), 8, TAU, ids)
    assert meta["arrays"]["train"]["h"]["dtype"] == "float16"
    torch.testing.assert_close(
        torch.from_numpy(np.array(arrays["h"])).float(), h, atol=2e-3, rtol=1e-3
    )
    assert np.array_equal(arrays["idx"], live.idx.numpy())
    np.testing.assert_allclose(arrays["logp"], live.logp.numpy(), atol=5e-3)
    np.testing.assert_allclose(arrays["rest"], live.rest_logp.numpy(), rtol=1e-6)
    np.testing.assert_allclose(arrays["ce"], live.ce.numpy(), rtol=1e-6)


def test_the_key_covers_encoder_layer_k_and_temperature_and_a_hit_is_reused(tmp_path):
    encoder = tiny_encoder()
    token_entry = tmp_path / "tokens" / "corpus-tok"
    splits = blocks()
    first, _ = teacher_cache.load_or_build(tmp_path, token_entry, splits, encoder, 8, TAU)
    stamp = (first / "meta.json").stat().st_mtime_ns
    again, _ = teacher_cache.load_or_build(tmp_path, token_entry, splits, encoder, 8, TAU)
    assert again == first and (first / "meta.json").stat().st_mtime_ns == stamp  # not rebuilt
    others = {
        teacher_cache.load_or_build(tmp_path, token_entry, splits, encoder, 4, TAU)[0],
        teacher_cache.load_or_build(tmp_path, token_entry, splits, encoder, 8, 1.0)[0],
        teacher_cache.load_or_build(
            tmp_path, tmp_path / "tokens" / "other", splits, encoder, 8, TAU
        )[0],
    }
    assert first not in others and len(others) == 3
    base = teacher_cache.TeacherKey(encoder.fingerprint, encoder.layer, encoder.head, 8, TAU)
    variants = [
        teacher_cache.TeacherKey("0" * 16, encoder.layer, encoder.head, 8, TAU),
        teacher_cache.TeacherKey(encoder.fingerprint, 0, encoder.head, 8, TAU),
        teacher_cache.TeacherKey(encoder.fingerprint, encoder.layer, "mlm", 8, TAU),
    ]
    assert len({base.digest(), *(v.digest() for v in variants)}) == 4


def test_a_stale_or_damaged_entry_is_refused_with_its_directory_named(tmp_path):
    encoder = tiny_encoder()
    token_entry = tmp_path / "tokens" / "corpus-tok"
    entry, meta = teacher_cache.load_or_build(tmp_path, token_entry, blocks(), encoder, 8, TAU)
    meta_path = entry / "meta.json"
    stale = json.loads(meta_path.read_text())
    stale["key"]["encoder_fingerprint"] = "feedfacefeedface"
    meta_path.write_text(json.dumps(stale))
    with pytest.raises(ConfigError, match=r"stale.*feedfacefeedface") as err:
        teacher_cache.load_or_build(tmp_path, token_entry, blocks(), encoder, 8, TAU)
    assert str(entry) in str(err.value)
    meta_path.write_text(json.dumps(meta))
    with open(entry / "train_h.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ConfigError, match=r"damaged: train_h\.bin has 100 bytes"):
        teacher_cache.load_or_build(tmp_path, token_entry, blocks(), encoder, 8, TAU)


def test_k_larger_than_the_vocabulary_is_refused():
    encoder = tiny_encoder()
    with pytest.raises(ConfigError, match=f"model.kd_top_k=1000 .* only {encoder.vocab_size}"):
        teacher_cache.load_or_build("unused", REPO, blocks(), encoder, 1000, TAU)


BUILD = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [{tests!r}, {tests!r} + "/wavgpt/data"]
    import numpy as np
    from pathlib import Path
    from wavgpt.data.test_teacher_cache import blocks
    from helpers.wavgpt_batches import tiny_encoder
    from wavelab.wavgpt.data import teacher_cache
    from wavelab.wavgpt.model.distill import teacher_topk

    encoder = tiny_encoder()
    real = teacher_cache._fill_split
    def slow(*args, **kwargs):  # hold the build open so that the other job arrives meanwhile
        out = real(*args, **kwargs)
        print("FILLED", args[1], flush=True)
        time.sleep(1.0)
        return out
    teacher_cache._fill_split = slow
    entry, meta = teacher_cache.load_or_build(
        {root!r}, Path({root!r}) / "tokens" / "corpus-tok", blocks(200), encoder, 8, 2.0
    )
    print("ENTRY", entry, np.asarray(teacher_cache.open_split(entry, meta, "val")["ce"]).sum())
    """
)


def test_two_jobs_building_at_once_build_it_once_and_both_read_it(tmp_path):
    script = BUILD.format(tests=str(REPO / "tests"), root=str(tmp_path))
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [job.communicate(timeout=240) for job in jobs]
    for job, (_, err) in zip(jobs, outs):
        assert job.returncode == 0, err[-3000:]
    entries = [line for out, _ in outs for line in out.splitlines() if line.startswith("ENTRY")]
    assert len(entries) == 2 and entries[0] == entries[1]
    fills = [line for out, _ in outs for line in out.splitlines() if line.startswith("FILLED")]
    assert sorted(fills) == ["FILLED train", "FILLED val"]  # one build of both splits
    teacher_dir = tmp_path / "teacher"
    assert [p.name for p in teacher_dir.iterdir() if not p.name.endswith(".lock")] == [
        entries[0].split()[1].rsplit("/", 1)[1]
    ]  # no temp dir left behind


def test_a_cached_run_trains_through_the_real_config_and_k_above_the_vocabulary_is_one_error(
    entry, tiny_encoder_dir, corpus_file
):
    args = [
        "model=wavgpt",
        f"model.encoder.name_or_path={tiny_encoder_dir}",
        f"data.path={corpus_file}",
        *WAVGPT_SMALL,
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "model.scheduler.warmup_steps=1",
        "callbacks.plots=null",
        "callbacks.reconstructions=null",
        "extras.print_config=false",
    ]
    result = entry("run", *args, "data.teacher_cache=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val/acc" in result.stdout + result.stderr
    assert list((entry.cache_dir / "teacher").glob("*/meta.json"))
    bad = entry("run", *args, "model.kd_top_k=1000")
    assert_clean_error(bad, "model.kd_top_k=1000")
    full = entry("run", *args, "model.kd=full", "data.teacher_cache=true")
    assert_clean_error(full, "model.kd=full", "data.teacher_cache=false")


def test_sigterm_during_a_build_says_so_and_leaves_no_partial_files(tmp_path):
    script = BUILD.format(tests=str(REPO / "tests"), root=str(tmp_path))
    job = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = job.stdout.readline()  # the first split is filled; the build sleeps after it
        assert first.startswith("FILLED"), first + job.stderr.read()[-3000:]
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), err[-3000:]
    assert "teacher cache build stopped by SIGTERM" in err, err[-3000:]
    leftovers = [p for p in (tmp_path / "teacher").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == [], leftovers
