"""``python -m wavelab.bench data``: preparing and training on generated corpora of growing
size, per tokenizer, as a user's commands do.

Each corpus is the packaged complete works (as they are, on one line, or with Cyrillic letters:
``corpus``) repeated to ``size`` MB, written under ``workdir`` (removed afterwards unless
``keep``). Per corpus and tokenizer, three fresh processes, each with its peak RSS (the
interpreter and its imports included, as a user's run pays them): the preparation (read, hash,
tokenize, write the token cache) on an empty cache, which also reports its own wall time;
``python -m wavelab.run`` for ``train_steps`` steps on that cache, with one validation and
last.ckpt at the end; and the same command with ``resume_dir=`` for ``resume_steps`` more steps.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from omegaconf import DictConfig
from tokenizers import Tokenizer

from wavelab.bench import check_count, load_line, publish
from wavelab.bench.measure import Measured, run_measured
from wavelab.core.errors import ConfigError

LIBRARY_CHARS = 1 << 24  # characters that the library's own encoding rate is measured on
LIBRARY_BATCH_CHARS = 1 << 20  # ... in batches of this many


# ASCII letters -> Cyrillic ones (two UTF-8 bytes each): most of a ``non_ascii`` corpus.
CYRILLIC = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "".join(map(chr, range(0x430, 0x44A))) + "".join(map(chr, range(0x410, 0x42A))),
)
SHAPES = {
    "lines": lambda works: works,  # the works' own lines and paragraphs
    "one_line": lambda works: works.replace("\n", " "),  # one line: no newline anywhere
    "non_ascii": lambda works: works.translate(CYRILLIC),  # letters in Cyrillic
}


def make_corpus(path: Path, n_bytes: int, shape: str = "lines") -> None:
    """The complete works in ``shape`` (``SHAPES``), repeated and cut to about ``n_bytes`` bytes
    (at a line end where it has lines, else at a space)."""
    from wavelab.data.corpora import shakespeare_complete_works

    works = SHAPES[shape](shakespeare_complete_works()).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        written = 0
        while written + len(works) <= n_bytes:
            f.write(works)
            written += len(works)
        rest = works[: max(0, n_bytes - written)]
        end = b"\n" if b"\n" in works else b" "
        f.write(rest[: rest.rfind(end) + 1])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def library_tokenizer(data):
    """The HF ``tokenizers`` Tokenizer that a set-up datamodule encodes with (None for char)."""
    tok = data.tokenizer
    if hasattr(tok, "backend_tokenizer"):  # WavGPT's transformers tokenizer
        return tok.backend_tokenizer
    spec = tok.to_dict()
    return Tokenizer.from_str(spec["json"]) if "json" in spec else None


def library_rate(tok, path: str) -> float:
    """MB per CPU-second of HF ``tokenizers``' own ``encode_batch_fast`` on the corpus's first
    ``LIBRARY_CHARS`` characters, as its lines, a batch of ``LIBRARY_BATCH_CHARS`` at a time:
    the library keeps an ``Encoding`` object per line, so the whole text in one call would hold
    gigabytes."""
    mb, seconds = 0.0, 0.0
    with open(path, encoding="utf-8") as f:
        for _ in range(LIBRARY_CHARS // LIBRARY_BATCH_CHARS):
            lines = f.read(LIBRARY_BATCH_CHARS).splitlines(keepends=True)
            if not lines:
                break
            mb += sum(len(line.encode("utf-8")) for line in lines) / 1e6
            start = cpu_seconds()
            tok.encode_batch_fast(lines, add_special_tokens=False)
            seconds += cpu_seconds() - start
    return mb / seconds


def child(overrides_json: str, path: str, cache_dir: str) -> None:
    """Prepares one corpus with the run config that ``overrides`` compose and prints JSON (run
    in a subprocess): ``seconds`` from composing the config on (the imports the data module
    pulls in included), ``prepare_seconds`` and ``prepare_cpu_seconds`` (all threads) of the
    preparation alone, its peak RSS, and the library's own encoding rate on the same text."""
    from wavelab.core.compose import compose
    from wavelab.core.config import instantiate

    start = time.perf_counter()
    overrides = [*json.loads(overrides_json), f"data.path={path}", f"paths.cache_dir={cache_dir}"]
    cfg = compose(overrides, "config", Path(cache_dir) / "run")
    data = instantiate(cfg.data, "data")
    prepare_start, cpu_start = time.perf_counter(), cpu_seconds()
    data.prepare_data()
    end, cpu_end = time.perf_counter(), cpu_seconds()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    data.setup()
    tok = library_tokenizer(data)
    result = {
        "seconds": end - start,
        "prepare_seconds": end - prepare_start,
        "prepare_cpu_seconds": cpu_end - cpu_start,
        "peak_rss_bytes": peak,
        "library_mb_per_cpu_s": None if tok is None else library_rate(tok, path),
    }
    print(json.dumps(result))


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _measured(args: list[str], log: Path, cfg: DictConfig, what: str) -> Measured:
    """``args`` run by this interpreter, measured; RuntimeError naming ``what`` if it failed
    (a run killed for passing ``rss_limit_gb`` is returned, marked ``over_limit``)."""
    done = run_measured([sys.executable, *args], log, int(float(cfg.rss_limit_gb) * 1e9))
    if done.returncode != 0 and not done.over_limit:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.output}")
    return done


def measure(cfg: DictConfig, corpus: Path, tok: str, work: Path) -> dict:
    """One (corpus, tokenizer): preparation alone on an empty cache, then training on that
    cache (``train_steps`` steps, one validation, last.ckpt), then its resume for
    ``resume_steps`` more steps, each a fresh process."""
    cache, logs = work / f"cache_{corpus.stem}_{tok}", work / f"logs_{corpus.stem}_{tok}"
    for path in (cache, logs):
        shutil.rmtree(path, ignore_errors=True)
    overrides = list(cfg.preparations[tok])
    what = f"{tok} on {corpus.name}"
    args = ["--child", json.dumps(overrides), str(corpus), str(cache)]
    prep = _measured(["-m", "wavelab.data.bench", *args], logs.with_suffix(".prep.log"), cfg, what)
    if prep.over_limit:
        raise RuntimeError(
            f"{what}: preparation passed rss_limit_gb={cfg.rss_limit_gb} and was killed"
        )
    times = json.loads(prep.output.strip().splitlines()[-1])
    mb = corpus.stat().st_size / 1e6
    row = {
        "size_mb": mb,
        "tokenizer": tok,
        "seconds": times["seconds"],
        "prepare_seconds": times["prepare_seconds"],
        "mb_per_s": mb / times["prepare_seconds"],
        "mb_per_cpu_s": mb / times["prepare_cpu_seconds"],
        "library_mb_per_cpu_s": times["library_mb_per_cpu_s"],
        "prep_rss_gb": times["peak_rss_bytes"] / 1e9,  # before the library rate is measured
        "cache_mb": du(cache / "tokens") / 1e6,
    }
    steps = int(cfg.train_steps)
    run = [
        "-m",
        "wavelab.run",
        *overrides,
        *cfg.train_overrides,
        f"data.path={corpus}",
        f"paths.cache_dir={cache}",
        f"paths.log_dir={logs}",
    ]
    train = _measured(
        [*run, f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}"],
        logs.with_suffix(".train.log"),
        cfg,
        what + " (training)",
    )
    row.update(train_seconds=train.seconds, train_rss_gb=train.peak_rss_bytes / 1e9)
    row.update(over_limit=train.over_limit, resume_seconds=None, resume_rss_gb=None)
    if not train.over_limit:
        (run_dir,) = (logs / "train" / "runs").iterdir()
        resume = _measured(
            [*run, f"resume_dir={run_dir}", f"trainer.max_steps={steps + int(cfg.resume_steps)}"],
            logs.with_suffix(".resume.log"),
            cfg,
            what + " (resume)",
        )
        row.update(resume_seconds=resume.seconds, resume_rss_gb=resume.peak_rss_bytes / 1e9)
        row["over_limit"] = resume.over_limit
    row["peak_rss_gb"] = max(row["prep_rss_gb"], row["train_rss_gb"], row["resume_rss_gb"] or 0)
    for path in (cache, logs):
        shutil.rmtree(path, ignore_errors=True)
    return row


def main(cfg: DictConfig) -> None:
    tokenizers = list(cfg.tokenizers)
    known = list(cfg.preparations)
    if not tokenizers or any(t not in known for t in tokenizers):
        raise ConfigError(f"tokenizers={tokenizers} is invalid: choose from {known}")
    if not cfg.sizes_mb or any(float(s) <= 0 for s in cfg.sizes_mb):
        raise ConfigError(f"sizes_mb={list(cfg.sizes_mb)} is invalid: need sizes > 0")
    for key in ("train_steps", "resume_steps"):
        check_count(key, cfg[key], 1)
    if cfg.corpus not in SHAPES:
        raise ConfigError(f"corpus={cfg.corpus!r} is invalid: choose from {list(SHAPES)}")
    if not float(cfg.rss_limit_gb) > 0:
        raise ConfigError(f"rss_limit_gb={cfg.rss_limit_gb} is invalid: must be > 0")
    work = Path(cfg.workdir).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    rows, loadavg_before = [], os.getloadavg()
    print(HEADER, flush=True)
    try:
        for size in cfg.sizes_mb:
            corpus = work / f"corpus_{size}MB_{cfg.corpus}.txt"
            make_corpus(corpus, int(float(size) * 1e6), cfg.corpus)
            for tok in tokenizers:
                rows.append(measure(cfg, corpus, tok, work))
                print(_row(rows[-1], cfg.rss_limit_gb), flush=True)
            if not cfg.keep:
                corpus.unlink(missing_ok=True)
    finally:
        if not cfg.keep:
            shutil.rmtree(work, ignore_errors=True)
    env = {
        "corpus": cfg.corpus,
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
    }
    rows_md = [_row(r, cfg.rss_limit_gb) for r in rows]
    publish({"rows": rows, "env": env}, "\n".join([HEADER, *rows_md, "", load_line(env)]), cfg.json)


HEADER = (
    "| corpus MB | tokenizer | prep s | prepare_data s | MB/s | MB/cpu-s | library MB/cpu-s "
    "| prep RSS GB | train s | train RSS GB | resume s | resume RSS GB | peak RSS GB | cache MB "
    "|\n" + "|---" * 14 + "|"
)


def _row(r: dict, limit_gb: float) -> str:
    over = f" (killed at > {float(limit_gb):g} GB)" if r["over_limit"] else ""
    lib = "-" if r["library_mb_per_cpu_s"] is None else f"{r['library_mb_per_cpu_s']:.2f}"
    resume = "not run" if r["resume_rss_gb"] is None else f"{r['resume_seconds']:.0f}"
    resume_rss = "not run" if r["resume_rss_gb"] is None else f"{r['resume_rss_gb']:.2f}"
    return (
        f"| {r['size_mb']:.3g} | {r['tokenizer']} | {r['seconds']:.1f} | "
        f"{r['prepare_seconds']:.1f} | {r['mb_per_s']:.2f} | {r['mb_per_cpu_s']:.2f} | {lib} | "
        f"{r['prep_rss_gb']:.2f} | {r['train_seconds']:.0f} | {r['train_rss_gb']:.2f} | "
        f"{resume} | {resume_rss} | {r['peak_rss_gb']:.2f}{over} | {r['cache_mb']:.0f} |"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
