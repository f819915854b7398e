"""The ``datasets`` path, offline: local text, json and parquet files, a dataset saved with
``save_to_disk``, and streaming, each trained a few steps through the real config for gpt and
wavgpt; and its bad inputs end in one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from helpers.cli import assert_clean_error
from helpers.small import LM_SMALL

from wavelab.data.corpora import shakespeare_complete_works
from wavelab.data.source import CorpusSource
from wavelab.data.stream import TextStream

STEPS = ["trainer.max_steps=2", "trainer.val_check_interval=2", "model.scheduler.warmup_steps=1"]


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> dict[str, list[str]]:
    """One small corpus in each form, as the data keys that read it."""
    root = tmp_path_factory.mktemp("datasets")
    lines = shakespeare_complete_works()[:40_000].splitlines()
    (root / "plays.txt").write_text("\n".join(lines) + "\n")
    with open(root / "plays.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps({"line": line, "n": len(line)}) + "\n")
    ds = datasets.Dataset.from_dict({"text": lines})
    ds.to_parquet(str(root / "plays.parquet"))
    ds.save_to_disk(str(root / "saved"))
    (root / "bad").mkdir()
    (root / "bad" / "bad.parquet").write_text("this is not parquet\n")
    return {
        "text": [f"data.hf_data_files={root / 'plays.txt'}"],
        "json": [f"data.hf_data_files={root / 'plays.jsonl'}", "data.hf_text_column=line"],
        "parquet": ["data.hf_name=parquet", f"data.hf_data_files={root}/*.parquet"],
        "parquet streamed": [
            f"data.hf_data_files={root / 'plays.parquet'}",
            "data.hf_streaming=true",
        ],
        "saved": [f"data.hf_disk={root / 'saved'}"],
        "bad parquet": [f"data.hf_data_files={root / 'bad' / 'bad.parquet'}"],
        "root": [str(root)],
    }


def text_of(source: CorpusSource, cache_dir: Path) -> str:
    from wavelab.data.corpora import corpus_stream

    stream: TextStream = corpus_stream(source, cache_dir)
    stream.scan()
    return "".join(stream.pieces())


def test_every_form_reads_the_same_text(forms, tmp_path):
    root = Path(forms["root"][0])
    want = (root / "plays.txt").read_text()[:-1]  # the rows joined by newlines
    sources = [
        CorpusSource(hf_data_files=str(root / "plays.txt")),
        CorpusSource(hf_data_files=str(root / "plays.jsonl"), hf_text_column="line"),
        CorpusSource(hf_data_files=str(root / "plays.parquet"), hf_streaming=True),
        CorpusSource(hf_disk=str(root / "saved")),
    ]
    for source in sources:
        assert text_of(source, tmp_path) == want, source


@pytest.mark.parametrize("form", ["text", "json", "parquet", "parquet streamed", "saved"])
def test_gpt_trains_from_each_form(form, forms, train_cli, tmp_path):
    result = train_cli(["model=gpt", "data.path=null", *forms[form], *STEPS], tmp_path)
    assert "val/loss" in result.stdout + result.stderr


@pytest.mark.parametrize("form", ["json", "saved"])
def test_wavgpt_trains_from_each_form(form, forms, train_cli, tmp_path):
    args = ["model=wavgpt", "data.path=null", "data.teacher_cache=false", *forms[form], *STEPS]
    result = train_cli(args, tmp_path)
    assert "val/acc" in result.stdout + result.stderr


def test_bad_datasets_inputs_are_one_clear_line(forms, entry, tmp_path):
    root = Path(forms["root"][0])
    cases = [
        ([f"data.hf_data_files={root}/nothing*.txt"], ["data.hf_data_files", "matches no file"]),
        (
            [f"data.hf_data_files={root / 'plays.jsonl'}", "data.hf_text_column=text"],
            ["data.hf_text_column='text'", "line"],
        ),
        (forms["bad parquet"], ["data.hf_data_files", "bad.parquet", "parquet"]),
        ([f"data.hf_disk={root / 'plays.txt'}"], ["data.hf_disk", "save_to_disk"]),
    ]
    for overrides, names in cases:
        result = entry("run", "model=gpt", *LM_SMALL, "data.path=null", *overrides, timeout=120)
        assert_clean_error(result, *names)


def test_a_hub_name_offline_is_one_clear_line(entry):
    result = entry(
        "run",
        "model=gpt",
        *LM_SMALL,
        "data.path=null",
        "data.hf_name=wikitext",
        "data.hf_config=wikitext-103-raw-v1",
        timeout=120,
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
    )
    assert_clean_error(result, "data.hf_name='wikitext'", "offline")
