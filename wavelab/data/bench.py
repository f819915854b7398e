"""``python -m wavelab.bench data``: preparing generated corpora of growing size, per tokenizer.

Each corpus is the packaged complete works repeated to ``size`` MB, written under ``workdir``
(removed afterwards unless ``keep``). Each preparation (read, hash, tokenize, write the token
cache) runs in a fresh subprocess with an empty cache, which reports its own wall time and peak
RSS (``getrusage``): the interpreter and its imports included, as a user's run pays them.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from wavelab.bench import load_line, publish
from wavelab.core.errors import ConfigError


def make_corpus(path: Path, n_bytes: int) -> None:
    """The complete works, repeated and cut (at a line end) to about ``n_bytes`` bytes."""
    from wavelab.data.corpora import shakespeare_complete_works

    works = shakespeare_complete_works().encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        written = 0
        while written + len(works) <= n_bytes:
            f.write(works)
            written += len(works)
        rest = works[: max(0, n_bytes - written)]
        f.write(rest[: rest.rfind(b"\n") + 1])


def child(overrides_json: str, path: str, cache_dir: str) -> None:
    """Prepares one corpus with the run config that ``overrides`` compose and prints {seconds,
    peak_rss_bytes} as JSON (run in a subprocess)."""
    from wavelab.core.compose import compose
    from wavelab.core.config import instantiate

    start = time.perf_counter()
    overrides = [*json.loads(overrides_json), f"data.path={path}", f"paths.cache_dir={cache_dir}"]
    cfg = compose(overrides, "config", Path(cache_dir) / "run")
    instantiate(cfg.data, "data").prepare_data()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak}))


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(cfg: DictConfig) -> None:
    tokenizers = list(cfg.tokenizers)
    known = list(cfg.preparations)
    if not tokenizers or any(t not in known for t in tokenizers):
        raise ConfigError(f"tokenizers={tokenizers} is invalid: choose from {known}")
    if not cfg.sizes_mb or any(float(s) <= 0 for s in cfg.sizes_mb):
        raise ConfigError(f"sizes_mb={list(cfg.sizes_mb)} is invalid: need sizes > 0")
    work = Path(cfg.workdir).expanduser()
    rows, loadavg_before = [], os.getloadavg()
    try:
        for size in cfg.sizes_mb:
            corpus = work / f"corpus_{size}MB.txt"
            make_corpus(corpus, int(float(size) * 1e6))
            for tok in tokenizers:
                cache = work / f"cache_{size}MB_{tok}"
                shutil.rmtree(cache, ignore_errors=True)
                overrides = json.dumps(list(cfg.preparations[tok]))
                args = ["--child", overrides, str(corpus), str(cache)]
                done = subprocess.run(
                    [sys.executable, "-m", "wavelab.data.bench", *args],
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"{tok} at {size} MB failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                mb = corpus.stat().st_size / 1e6
                rows.append(
                    {
                        "size_mb": mb,
                        "tokenizer": tok,
                        "seconds": result["seconds"],
                        "mb_per_s": mb / result["seconds"],
                        "peak_rss_gb": result["peak_rss_bytes"] / 1e9,
                        "cache_mb": du(cache / "tokens") / 1e6,
                    }
                )
                shutil.rmtree(cache, ignore_errors=True)
                print(_row(rows[-1]), flush=True)
            if not cfg.keep:
                corpus.unlink(missing_ok=True)
    finally:
        if not cfg.keep:
            shutil.rmtree(work, ignore_errors=True)
    env = {"loadavg_before": loadavg_before, "loadavg_after": os.getloadavg()}
    header = "| corpus MB | tokenizer | seconds | MB/s | peak RSS GB | cache MB |\n|---|---|---|---|---|---|"
    table = "\n".join([header, *(_row(r) for r in rows), "", load_line(env)])
    publish({"rows": rows, "env": env}, table, cfg.json)


def _row(r: dict) -> str:
    return (
        f"| {r['size_mb']:.0f} | {r['tokenizer']} | {r['seconds']:.1f} | {r['mb_per_s']:.2f} | "
        f"{r['peak_rss_gb']:.2f} | {r['cache_mb']:.0f} |"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
