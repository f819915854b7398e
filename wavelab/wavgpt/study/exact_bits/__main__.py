"""``python -m wavelab.wavgpt.study.exact_bits ckpt_paths=[...] prior=... out_dir=...``
(keys: conf/exact_bits.yaml).

Every code of the held-out blocks made exact, in total bits per token: the code's bits plus the
payload's (``measure``). The encoder writes one exact file per code and payload into
``out_dir``, with the blocks' true ids; ``stage=decode`` processes, started here one per file,
decode them from the files alone and count the blocks that come back exactly. ``out_dir`` then
holds ``results.json`` (the rows, the command and the commit), ``results.md`` (the table) and
``total_bits.png`` (total bits against the code's own rate).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from wavelab.core.cli import checked_device, hydra_entry, required
from wavelab.core.errors import ConfigError
from wavelab.wavgpt.study.held_out import checked_count, ckpt_path_list

log = logging.getLogger("wavelab.wavgpt.study.exact_bits")
LITERAL_KEYS = ("prior", "out_dir")
STAGES = ("encode", "decode")
COLUMNS = (
    "code_bits_per_token",
    "payload_bits_per_token",
    "total_bits_per_token",
    "total_bits_per_token_block_mean",
    "exact_blocks",
    "cosine",
    "neighbours_at_10",
    "spearman",
)


def coders(cfg, modules, lm, alphas_betas):
    """{name: (codec, head coder, product coder)} per checkpoint, and the prior coder."""
    from wavelab.wavgpt.codec.api import WavGPTCodec
    from wavelab.wavgpt.codec.exact import ExactCoder, Frame

    first = next(iter(modules.values()))
    tok = first.tokenizer
    frame, vocab = Frame(tok.cls_token_id, tok.sep_token_id), first.encoder.vocab_size
    prior = ExactCoder("prior", frame, vocab, prior=lm)
    per_ckpt = {}
    for i, module in enumerate(modules.values()):
        codec = WavGPTCodec(module)
        alpha, beta = alphas_betas[i] if alphas_betas else (1.0, 1.0)
        head = ExactCoder("head", frame, vocab, codec=codec)
        product = ExactCoder("product", frame, vocab, prior=lm, codec=codec, alpha=alpha, beta=beta)
        per_ckpt[f"ckpt{i}"] = (codec, head, product)
    return prior, per_ckpt


def load(cfg: DictConfig, device: str):
    from wavelab.core.checkpoints import load_module
    from wavelab.wavgpt.codec.prior import check_prior
    from wavelab.wavgpt.study.held_out import load_wavgpt_modules

    paths = ckpt_path_list(cfg, "ckpt_paths")
    modules = load_wavgpt_modules(paths, device, "ckpt_paths")
    prior_path = required(cfg, "prior")
    lm = load_module(prior_path, map_location=device, key="prior").eval()
    check_prior(lm, next(iter(modules.values())).tokenizer.get_vocab(), f"prior={prior_path!r}")
    return paths, modules, lm


def encode(cfg: DictConfig, out_dir: Path, device: str) -> None:
    from wavelab.wavgpt.code.exact_format import ExactFile
    from wavelab.wavgpt.study.exact_bits import measure
    from wavelab.wavgpt.study.held_out import held_out_batches, training_blocks

    max_blocks = checked_count(cfg, "max_blocks", allow_none=True)
    fit_count = checked_count(cfg, "fit_blocks", allow_none=False)
    paths, modules, lm = load(cfg, device)
    batches = list(held_out_batches(paths[0], max_blocks, 32, device, "ckpt_paths"))
    ids = measure.block_rows(batches)
    tokens = np.array([len(r) for r in ids])
    log.info("%d held-out blocks, %d tokens", len(ids), tokens.sum())
    first = next(iter(modules.values()))
    original = measure.pooled_originals(first, batches)

    prior, per_ckpt = coders(cfg, modules, lm, None)
    fit_batches = training_blocks(paths[0], fit_count, 32, "ckpt_paths")
    fit_ids = measure.block_rows(fit_batches)[:fit_count]
    fitted = []
    for name, (codec, _, product) in per_ckpt.items():
        codes = [
            c.to_bytes()
            for b in fit_batches
            for c in codec.encode_ids(b["input_ids"], b["attention_mask"])
        ]
        fitted.append(
            measure.fit_exponents(product, list(zip(fit_ids, codes)), cfg.alphas, cfg.betas)
        )
        log.info(
            "%s: α=%.2f β=%.2f (%.2f bits/token on %d training blocks)",
            name,
            *fitted[-1],
            len(fit_ids),
        )
    prior, per_ckpt = coders(cfg, modules, lm, [f[:2] for f in fitted])

    rows = {("none", "prior"): measure.Row("none", "prior", file="prior.wavx")}
    codes = {}
    for name, (codec, _, _) in per_ckpt.items():
        codes[name] = [
            c.to_bytes()
            for b in batches
            for c in codec.encode_ids(b["input_ids"], b["attention_mask"])
        ]
        embedding = measure.embedding_scores(codec.embed(codes[name]), original)
        for payload in ("head", "product", "prior"):
            file = f"{name}_{payload}.wavx" if payload != "prior" else "prior.wavx"
            rows[(name, payload)] = measure.Row(name, payload, file=file, embedding=dict(embedding))
    records = {"prior": [], **{f"{n}_{p}": [] for n in per_ckpt for p in ("head", "product")}}
    start, cpu = time.time(), time.process_time()
    for i, block in enumerate(ids):
        logits = prior.prior_logits(block[1:-1])
        record, ideal = prior.measured_block(block, b"", logits)
        records["prior"].append(record)
        rows[("none", "prior")].code_bits.append(0)
        rows[("none", "prior")].payload_bits.append(record.payload_bits())
        rows[("none", "prior")].ideal_bits.append(ideal)
        for name, (_, head, product) in per_ckpt.items():
            code = codes[name][i]
            for payload, coder in (("head", head), ("product", product)):
                rec, ideal = coder.measured_block(block, code, logits)
                records[f"{name}_{payload}"].append(rec)
                rows[(name, payload)].code_bits.append(8 * len(code))
                rows[(name, payload)].payload_bits.append(rec.payload_bits())
                rows[(name, payload)].ideal_bits.append(ideal)
            rows[(name, "prior")].code_bits.append(8 * len(code))
            rows[(name, "prior")].payload_bits.append(measure.payload_bits(record, len(code)))
        if (i + 1) % 500 == 0:
            log.info("encoded %d/%d blocks (%.0f s)", i + 1, len(ids), time.time() - start)
    encode_cpu = time.process_time() - cpu
    coders_by_file = {"prior": prior}
    coders_by_file.update(
        {
            f"{n}_{p}": c
            for n, (_, h, pr) in per_ckpt.items()
            for p, c in (("head", h), ("product", pr))
        }
    )
    for stem, recs in records.items():
        coder = coders_by_file[stem]
        file = ExactFile(coder.mode, coder.alpha, coder.beta, coder.prior_fingerprint, tuple(recs))
        (out_dir / f"{stem}.wavx").write_bytes(file.to_bytes())
    lengths = tokens.astype(np.int32)
    padded = np.zeros((len(ids), int(lengths.max())), dtype=np.int32)
    for row, block in zip(padded, ids):
        row[: len(block)] = block
    np.savez(out_dir / "truth.npz", ids=padded, lengths=lengths)

    d = original.shape[-1]
    for label, code_bytes, embedding in measure.two_part_rows(original, d):
        row = measure.Row(label, "prior", file="prior.wavx", embedding=embedding)
        row.code_bits = [8 * code_bytes] * len(ids)
        row.payload_bits = [measure.payload_bits(r, code_bytes) for r in records["prior"]]
        rows[(label, "prior")] = row
        rows[(label, "lzma ids")] = measure.lzma_row(label, code_bytes, ids, embedding)
    rows[("none", "lzma ids")] = measure.lzma_row("none", 0, ids, {})

    decoded = decode_in_fresh_processes(cfg, out_dir, sorted(records))
    summaries = []
    for row in rows.values():
        exact = row.exact if row.exact is not None else decoded[Path(row.file).stem]["exact_blocks"]
        summaries.append(row.summary(tokens, exact))
    results = {
        "command": " ".join(sys.argv),
        "commit": commit(),
        "blocks": len(ids),
        "tokens": int(tokens.sum()),
        "prior": str(cfg.prior),
        "ckpt_paths": {f"ckpt{i}": p for i, p in enumerate(paths)},
        "fitted_exponents": {
            f"ckpt{i}": {
                "alpha": f[0],
                "beta": f[1],
                "fit_bits_per_token": f[2],
                "fit_blocks": len(fit_ids),
            }
            for i, f in enumerate(fitted)
        },
        "encode_tokens_per_cpu_s_all_files": float((tokens - 2).sum() / encode_cpu),
        "decoded": decoded,
        "rows": summaries,
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "results.md").write_text(table(summaries))
    plot(summaries, out_dir / "total_bits.png")
    print(table(summaries))


def decode_in_fresh_processes(cfg: DictConfig, out_dir: Path, stems: list[str]) -> dict:
    """{file stem: {exact_blocks, decode_tokens_per_cpu_s}}, each file decoded by its own
    ``stage=decode`` process, ``workers`` at a time (the next starts as one ends)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = checked_count(cfg, "workers", allow_none=False)
    paths = ",".join(str(p) for p in ckpt_path_list(cfg, "ckpt_paths"))
    keys = (("prior", cfg.prior), ("out_dir", out_dir), ("device", cfg.device))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def one(stem: str) -> dict:
        argv = [sys.executable, "-m", "wavelab.wavgpt.study.exact_bits", "stage=decode"]
        argv += [f"decode_file={stem}.wavx", f"ckpt_paths=[{paths}]"]
        argv += [f"{k}={v}" for k, v in keys]
        if subprocess.run(argv, env=env).returncode != 0:
            raise ConfigError(f"decoding {out_dir / (stem + '.wavx')} failed")
        return json.loads((out_dir / f"{stem}.decoded.json").read_text())

    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(stems, pool.map(one, stems)))


def decode(cfg: DictConfig, out_dir: Path, device: str) -> None:
    """One file decoded from its bytes alone, scored against the true ids."""
    from wavelab.wavgpt.code.exact_format import ExactFile
    from wavelab.wavgpt.study.exact_bits import measure

    torch.set_num_threads(1)
    stem = Path(required(cfg, "decode_file")).stem
    _paths, modules, lm = load(cfg, device)
    prior, per_ckpt = coders(cfg, modules, lm, None)
    file = ExactFile.from_bytes((out_dir / f"{stem}.wavx").read_bytes())
    if stem == "prior":
        coder = prior
    else:
        name, mode = stem.rsplit("_", 1)
        coder = per_ckpt[name][1 if mode == "head" else 2]
    truth = np.load(out_dir / "truth.npz", allow_pickle=False)
    ids = [row[:n].tolist() for row, n in zip(truth["ids"], truth["lengths"])]
    cpu = time.process_time()
    exact = measure.exact_fraction(file, coder, ids)
    seconds = time.process_time() - cpu
    tokens = int(sum(len(r) - 2 for r in ids))
    result = {"exact_blocks": exact, "decode_tokens_per_cpu_s": tokens / seconds}
    (out_dir / f"{stem}.decoded.json").write_text(json.dumps(result))
    log.info("%s: %.4f of %d blocks exact, %.0f tokens/s", stem, exact, len(ids), tokens / seconds)


def table(rows: list[dict]) -> str:
    head = "| code | payload | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = ["" if row.get(c) is None else f"{row[c]:.4g}" for c in COLUMNS]
        lines.append(f"| {row['code']} | {row['payload']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for payload, marker in (("prior", "o"), ("head", "s"), ("product", "^"), ("lzma ids", "x")):
        chosen = [r for r in rows if r["payload"] == payload]
        ax.scatter(
            [r["code_bits_per_token"] for r in chosen],
            [r["total_bits_per_token"] for r in chosen],
            marker=marker,
            label=f"payload: {payload}",
        )
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("log")
    ax.set_xlabel("code bits per token")
    ax.set_ylabel("total bits per token (code + payload), exact")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    return result.stdout.strip() or "unknown"


def run(cfg: DictConfig) -> None:
    stage = str(cfg.stage)
    if stage not in STAGES:
        raise ConfigError(f"stage={stage!r} is invalid: use one of {', '.join(STAGES)}")
    device = checked_device(str(cfg.device))
    out_dir = Path(required(cfg, "out_dir"))
    if stage == "decode":
        decode(cfg, out_dir, device)
        return
    if not out_dir.parent.is_dir():
        raise ConfigError(
            f"out_dir={str(out_dir)!r} is invalid: its parent directory does not exist"
        )
    out_dir.mkdir(exist_ok=True)
    torch.set_num_threads(1)
    encode(cfg, out_dir, device)


@hydra_entry("exact_bits", text_keys=LITERAL_KEYS)
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
