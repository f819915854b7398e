"""The battery of bad inputs for run, eval, sample and export: each through the real CLI ends
with exit code 2 and one error line naming the key or file, no traceback, and writes nothing
outside the one run dir of that command. Config errors fail before Lightning is imported, so
most cases take a second or two."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers.cli import Entry, assert_clean_error
from helpers.tiny_runs import TINY_GPT, tiny_gpt_run, write_corpus
from helpers.wavgpt_checkpoint import fit_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory, cache_dir, tiny_encoder_dir) -> dict[str, Path]:
    """Real tiny checkpoints and the broken files the cases point at (the token cache of the
    corpus is warmed in the session cache the ``entry`` fixture uses)."""
    root = tmp_path_factory.mktemp("inputs")
    corpus = write_corpus(root / "corpus.txt")
    run, _ = tiny_gpt_run(Entry(root / "work", cache_dir), corpus)
    gpt = run / "checkpoints" / "last.ckpt"
    no_last = shutil.copytree(run, root / "run_without_last")
    (no_last / "checkpoints" / "last.ckpt").unlink()
    wavgpt = root / "wavgpt.ckpt"
    fit_checkpoint(tiny_encoder_dir, wavgpt)
    truncated = root / "truncated.ckpt"
    truncated.write_bytes(gpt.read_bytes()[: gpt.stat().st_size // 2])
    text = root / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    lonely = root / "lonely" / "model.ckpt"  # no run config beside it
    lonely.parent.mkdir()
    shutil.copy(gpt, lonely)
    return {
        "corpus": corpus,
        "gpt": gpt,
        "run": run,
        "no_last": no_last,
        "wavgpt": wavgpt,
        "truncated": truncated,
        "text": text,
        "lonely": lonely,
        "missing": root / "missing.ckpt",
    }


RUN = [*TINY_GPT, "data.path={corpus}", "extras.print_config=false"]
# (entry, arguments, what the error line must name); {name} is a path from `files`.
CASES = {
    # values
    "lr zero": ("run", [*RUN, "model.optimizer.lr=0"], ["model.optimizer.lr=0"]),
    "lr negative": ("run", [*RUN, "model.optimizer.lr=-1e-3"], ["model.optimizer.lr"]),
    "lr text": ("run", [*RUN, "model.optimizer.lr=fast"], ["model.optimizer.lr", "fast"]),
    "seed text": ("run", [*RUN, "seed=abc"], ["seed", "abc", "integer"]),
    "seed float": ("run", [*RUN, "seed=1.5"], ["seed", "1.5", "integer"]),
    "val interval 0": ("run", [*RUN, "trainer.val_check_interval=0"], ["val_check_interval"]),
    "val interval 2.0": ("run", [*RUN, "trainer.val_check_interval=2.0"], ["val_check_interval"]),
    "max_steps 0": ("run", [*RUN, "trainer.max_steps=0"], ["trainer.max_steps=0"]),
    "max_steps -5": ("run", [*RUN, "trainer.max_steps=-5"], ["trainer.max_steps=-5"]),
    "keep_ratio text": ("run", ["model=wavgpt", "model.keep_ratio=abc"], ["model.keep_ratio"]),
    "value_bits 3": ("run", ["model=wavgpt", "model.value_bits=3"], ["model.value_bits=3", "16"]),
    # Hydra's own composition errors
    "unknown key": ("run", [*RUN, "trainer.max_stepz=3"], ["trainer.max_stepz"]),
    "unknown group option": ("run", ["model=nope"], ["model/nope", "gpt"]),
    "bad syntax": ("run", [*RUN, "trainer.max_steps=[1"], ["trainer.max_steps=[1"]),
    # trainer misconfigurations: Lightning's reason, no blame on the hardware
    "precision": ("run", [*RUN, "trainer.precision=bogus"], ["trainer", "bogus"]),
    "devices 0": ("run", [*RUN, "trainer.devices=0"], ["trainer.devices=0"]),
    # ckpt_path
    "ckpt missing": ("run", [*RUN, "ckpt_path={missing}"], ["ckpt_path", "missing.ckpt"]),
    "ckpt text": ("run", [*RUN, "ckpt_path={text}"], ["ckpt_path", "notes.ckpt"]),
    "ckpt truncated": ("run", [*RUN, "ckpt_path={truncated}"], ["ckpt_path", "truncated.ckpt"]),
    "ckpt remote": ("run", [*RUN, "ckpt_path=https://example.com/x.ckpt"], ["ckpt_path"]),
    "ckpt other family": ("run", [*RUN, "ckpt_path={wavgpt}"], ["ckpt_path", "WavGPT"]),
    "ckpt other shape": (
        "run",
        [*RUN, "ckpt_path={gpt}", "model.net.n_embd=64", "trainer.max_steps=4"],
        ["ckpt_path", "net.", "(", "in the checkpoint"],
    ),
    "ckpt other branch": (
        "run",
        [*RUN, "model=wavegpt", "ckpt_path={gpt}", "trainer.max_steps=4"],
        ["ckpt_path", "wavenet"],
    ),
    "ckpt at max_steps": ("run", [*RUN, "ckpt_path={gpt}"], ["step 2", "trainer.max_steps=2"]),
    # resume_dir
    "resume missing dir": ("run", ["resume_dir={missing}"], ["resume_dir"]),
    "resume without last": ("run", ["resume_dir={no_last}"], ["resume_dir", "last.ckpt"]),
    "resume new lr": (
        "run",
        ["resume_dir={run}", "trainer.max_steps=4", "model.optimizer.lr=0.5"],
        ["model.optimizer.lr=0.5", "resuming"],
    ),
    "resume new warmup": (
        "run",
        ["resume_dir={run}", "trainer.max_steps=4", "model.scheduler.warmup_steps=3"],
        ["model.scheduler.warmup_steps=3"],
    ),
    "resume other model": ("run", ["resume_dir={run}", "model=wavegpt"], ["model=wavegpt"]),
    # eval
    "eval no ckpt": ("eval", [], ["ckpt_path"]),
    "eval ckpt missing": ("eval", ["ckpt_path={missing}"], ["ckpt_path", "missing.ckpt"]),
    "eval ckpt text": ("eval", ["ckpt_path={text}"], ["ckpt_path", "notes.ckpt"]),
    "eval ckpt truncated": ("eval", ["ckpt_path={truncated}"], ["truncated.ckpt"]),
    "eval no run config": ("eval", ["ckpt_path={lonely}"], ["ckpt_path", "data="]),
    "eval unknown key": ("eval", ["ckpt_path={gpt}", "nope=1"], ["nope"]),
    "eval unknown data": ("eval", ["ckpt_path={gpt}", "data=nope"], ["data=nope"]),
    # sample
    "sample no ckpt": ("sample", [], ["ckpt_path"]),
    "sample top_k 0": ("sample", ["ckpt_path={gpt}", "top_k=0"], ["top_k=0"]),
    "sample top_k -3": ("sample", ["ckpt_path={gpt}", "top_k=-3"], ["top_k=-3"]),
    "sample temperature": ("sample", ["ckpt_path={gpt}", "temperature=-1"], ["temperature"]),
    "sample max_new_tokens": ("sample", ["ckpt_path={gpt}", "max_new_tokens=-1"], ["max_new"]),
    "sample num_samples": ("sample", ["ckpt_path={gpt}", "num_samples=0"], ["num_samples=0"]),
    "sample device": ("sample", ["ckpt_path={gpt}", "device=tpu"], ["device", "tpu"]),
    "sample wavgpt": ("sample", ["ckpt_path={wavgpt}"], ["WavGPT", "wavelab.wavgpt.codec"]),
    "sample ckpt text": ("sample", ["ckpt_path={text}"], ["ckpt_path", "notes.ckpt"]),
    "sample ckpt missing": ("sample", ["ckpt_path={missing}"], ["missing.ckpt"]),
    "sample kv_cache": ("sample", ["ckpt_path={gpt}", "kv_cache=maybe"], ["kv_cache", "maybe"]),
    # export
    "export no out": ("export", ["ckpt_path={gpt}"], ["out"]),
    "export overwrite": ("export", ["ckpt_path={gpt}", "out=hf", "overwrite=1"], ["overwrite=1"]),
    "export wavgpt": ("export", ["ckpt_path={wavgpt}", "out=hf"], ["WavGPT", "no Hugging Face"]),
    "export out file": ("export", ["ckpt_path={gpt}", "out={text}"], ["notes.ckpt", "directory"]),
    "export out cwd": ("export", ["ckpt_path={gpt}", "out=."], ["out='.'", "delete"]),
    "export ckpt missing": ("export", ["ckpt_path={missing}", "out=hf"], ["missing.ckpt"]),
}


def snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_error_and_writes_nothing_else(entry, files, case):
    module, args, names = CASES[case]
    given = {name: str(path) for name, path in files.items()}
    run_before = snapshot(files["run"])
    before = entry.files()

    result = entry(module, *(arg.format(**given) for arg in args))

    line = assert_clean_error(result, *names)
    assert "GPU" not in line or "gpu" in " ".join(args)  # hardware only when it is the cause
    new = entry.files() - before
    run_dirs = set()
    for path in new:
        rel = path.relative_to(entry.cwd).parts if path.is_relative_to(entry.cwd) else ()
        assert rel[:1] == ("logs",) and rel[2:3] == ("runs",), f"wrote {path}"
        run_dirs.add(rel[:4])
    assert len(run_dirs) <= 1, run_dirs
    assert not any(p.suffix == ".ckpt" or p.name == "metrics.json" for p in new), new
    assert snapshot(files["run"]) == run_before  # the other run's dir is untouched


def test_the_battery_covers_enough_inputs():
    assert len(CASES) >= 30
    assert {module for module, _, _ in CASES.values()} == {"run", "eval", "sample", "export"}


def test_a_gpu_trainer_on_a_machine_without_one_names_the_hardware(entry, files):
    if torch.cuda.is_available():  # then it runs; the message is only for machines without
        args = ["trainer.accelerator=gpu", "trainer.devices=0"]
        result = entry("run", *TINY_GPT, f"data.path={files['corpus']}", *args)
        assert "GPU" not in assert_clean_error(result, "trainer.devices=0")
        return
    args = [*TINY_GPT, f"data.path={files['corpus']}", "trainer.accelerator=gpu"]
    line = assert_clean_error(entry("run", *args), "trainer.accelerator=gpu", "no GPU")
    assert "trainer=cpu" in line
