"""A run SIGKILLed in its first training steps leaves its finished token cache usable: the
rerun trains on that very entry without tokenizing again. (A kill during the preparation itself
leaves no entry that looks finished: test_data_stream's kill test.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers.cli import REPO
from helpers.small import LM_SMALL, TRAINER_SMALL


def run_args(corpus: Path, cache: Path, logs: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wavelab.run",
        *LM_SMALL,
        *TRAINER_SMALL,
        "data.tokenizer=bpe",
        "data.bpe_vocab_size=300",
        f"data.path={corpus}",
        f"paths.cache_dir={cache}",
        f"paths.log_dir={logs}",
        f"trainer.max_steps={steps}",
        "trainer.log_every_n_steps=1",
    ]


def test_a_kill_in_the_first_steps_keeps_the_finished_cache_for_the_rerun(corpus_file, tmp_path):
    cache, logs, log = tmp_path / "cache", tmp_path / "logs", tmp_path / "first.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        job = subprocess.Popen(
            run_args(corpus_file, cache, logs, steps=100_000),
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        # Lightning writes a step's metrics row as it logs it: training is under way
        while not any(p.stat().st_size > 0 for p in logs.rglob("metrics.csv")):
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.05)
        job.send_signal(signal.SIGKILL)
        job.wait()
    first = log.read_text()
    assert "tokenizing" in first  # the first run built the entry
    (entry,) = (cache / "tokens").iterdir()
    files = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in entry.iterdir()}
    assert "meta.json" in files and not [name for name in files if ".tmp" in name]

    again = subprocess.run(
        run_args(corpus_file, cache, logs, steps=3),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "tokenizing" not in again.stdout + again.stderr  # the same entry, read as it was
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in entry.iterdir()} == files
