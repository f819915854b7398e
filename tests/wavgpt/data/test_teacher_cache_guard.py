"""The teacher cache refuses what would not fit, and what is damaged, in one line that names it;
a stopped lock holder is reported, not waited for; and the seed setup never writes hundreds of
GB."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from helpers.cli import REPO, Entry, assert_clean_error
from helpers.small import WAVGPT_SMALL
from helpers.wavgpt_batches import tiny_batch, tiny_encoder

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.data import teacher_cache

TAU = 2.0


def blocks(n: int = 10, T: int = 16) -> dict:
    ids, mask = tiny_batch([T - i % 4 for i in range(n)], T, seed=0)
    split = (ids.numpy(), mask.sum(1).numpy())
    return {"train": split, "val": split}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One intact entry, copied for each damage."""
    root = tmp_path_factory.mktemp("teacher")
    encoder = tiny_encoder()
    token_entry = root / "tokens" / "corpus-tok"
    entry, _ = teacher_cache.load_or_build(root, token_entry, blocks(), encoder, 8, TAU)
    return root, token_entry, entry, encoder


def zero(entry, name):
    path = entry / name
    path.write_bytes(b"\x00" * path.stat().st_size)


def half_nan(entry, name):
    h = np.fromfile(entry / name, dtype=np.float16)
    h[: len(h) // 2] = np.nan
    h.tofile(entry / name)


def ff(entry, name):
    path = entry / name
    path.write_bytes(b"\xff" * path.stat().st_size)


def edit_meta(change):
    def damage(entry, _):
        meta = json.loads((entry / "meta.json").read_text())
        change(meta)
        (entry / "meta.json").write_text(json.dumps(meta))

    return damage


def reshape_h(meta):
    shape = meta["arrays"]["val"]["h"]["shape"]
    meta["arrays"]["val"]["h"]["shape"] = [shape[0] * 2, shape[1] // 2, shape[2]]


DAMAGES = {
    "val_h zeroed": (zero, "val_h.bin", "val_h.bin does not match its recorded sha256"),
    "h half NaN": (half_nan, "train_h.bin", "train_h.bin"),
    "idx all 0xFF": (ff, "train_idx.bin", "train_idx.bin"),
    "no arrays": (edit_meta(lambda m: m.pop("arrays")), None, "meta.json has no arrays"),
    "dtype float17": (
        edit_meta(lambda m: m["arrays"]["train"]["h"].update(dtype="float17")),
        None,
        "train_h has dtype 'float17'",
    ),
    "no val split": (edit_meta(lambda m: m["arrays"].pop("val")), None, "splits ['train']"),
    "h reshaped": (edit_meta(reshape_h), None, "val_h has shape"),
}


@pytest.mark.parametrize("case", DAMAGES)
def test_a_damaged_entry_is_refused_naming_the_file(built, tmp_path, case):
    _, token_entry, entry, encoder = built
    damage, name, message = DAMAGES[case]
    copy = tmp_path / "teacher" / entry.name
    shutil.copytree(entry, copy)
    damage(copy, name)
    with pytest.raises(ConfigError, match=r"teacher cache .* is damaged") as err:
        teacher_cache.load_or_build(tmp_path, token_entry, blocks(), encoder, 8, TAU)
    assert message in str(err.value) and str(copy) in str(err.value)


def test_a_cache_over_the_budget_is_refused_before_writing(built, tmp_path):
    _, token_entry, _, encoder = built
    with pytest.raises(ConfigError, match=r"teacher_cache_max_gb=1e-06.*teacher_cache=false"):
        teacher_cache.load_or_build(tmp_path, token_entry, blocks(), encoder, 8, TAU, 1e-6)
    assert not list((tmp_path / "teacher").glob("*/*"))


HOLDER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from wavelab.wavgpt.data.teacher_guard import locked
    with locked(Path(sys.argv[1]), "a test entry"):
        print("LOCKED", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    """
)


def test_a_stopped_lock_holder_is_named_instead_of_waited_for(built, tmp_path):
    _, token_entry, _, encoder = built
    entry = teacher_cache.entry_dir(
        tmp_path,
        token_entry,
        teacher_cache.TeacherKey(encoder.fingerprint, encoder.layer, encoder.head, 8, TAU),
    )
    lock = entry.with_name(f".{entry.name}.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        start = time.monotonic()
        with pytest.raises(ConfigError, match=rf"pid {holder.pid}, which is stopped.*kill"):
            teacher_cache.load_or_build(tmp_path, token_entry, blocks(), encoder, 8, TAU)
        assert time.monotonic() - start < 30
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_full_disk_is_refused_before_the_build_and_leaves_nothing(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare to mount a small tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(REPO / "tests")!r}]
        from pathlib import Path
        from helpers.wavgpt_batches import tiny_batch, tiny_encoder
        from wavelab.core.errors import ConfigError
        from wavelab.wavgpt.data import teacher_cache
        ids, mask = tiny_batch([16] * 4000, 16, seed=0)
        split = (ids.numpy(), mask.sum(1).numpy())
        try:
            teacher_cache.load_or_build({str(mount)!r}, Path("tok"), {{"train": split}},
                                        tiny_encoder(), 8, 2.0)
        except ConfigError as e:
            print("ERROR", e)
        import os
        print("LEFT", sorted(str(p) for p in Path({str(mount)!r}).rglob("*") if p.is_file()))
        """
    )
    done = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=3m tmpfs "{mount}" && "$0" -c "$1"',
            sys.executable,
            script,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    if "mount" in done.stderr and done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert "ERROR" in done.stdout and "free on its disk" in done.stdout, done.stdout + done.stderr
    left = done.stdout.split("LEFT", 1)[1]
    assert ".tmp" not in left and "meta.json" not in left


BASE = [
    "model=wavgpt",
    *WAVGPT_SMALL,
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "model.scheduler.warmup_steps=1",
    "callbacks.plots=null",
    "callbacks.reconstructions=null",
    "callbacks.progress_bar=null",
]


def test_the_seed_setup_refuses_an_oversized_cache_or_goes_live(
    entry, tiny_encoder_dir, corpus_file, tmp_path
):
    entry = Entry(entry.cwd, tmp_path / "own_cache")  # no other test's teacher cache in it
    seed_like = [
        "experiment=wavgpt_seed_setup",
        *BASE,
        f"model.encoder.name_or_path={tiny_encoder_dir}",
        "data.hf_name=null",
        f"data.path={corpus_file}",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "trainer.max_epochs=1",
        "data.teacher_cache_max_gb=0.001",  # the test corpus's cache is tens of MB
    ]
    refused = entry("run", *seed_like, "data.teacher_cache=true")
    assert_clean_error(refused, "data.teacher_cache_max_gb=0.001", "data.teacher_cache=false")
    assert not list((entry.cache_dir / "teacher").glob("*/meta.json"))
    live = entry("run", *seed_like)  # the default, auto
    out = live.stdout + live.stderr
    assert live.returncode == 0, out[-3000:]
    assert "teacher_cache=auto: the teacher runs live" in out and "val/acc" in out


def test_a_block_longer_than_the_encoder_reads_is_one_line(entry, tiny_encoder_dir, corpus_file):
    result = entry(
        "run",
        *BASE,
        f"model.encoder.name_or_path={tiny_encoder_dir}",
        f"data.path={corpus_file}",
        "data.block_size=1024",
    )
    assert_clean_error(result, "data.block_size=1024", "512", "max_position_embeddings")
