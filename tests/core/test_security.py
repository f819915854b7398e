"""Checkpoints and run dirs cannot run code: every payload is refused before it runs.

Each payload, if it ran, would create a marker file; each test asserts a clean error and that
the marker was never created.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path

import pytest
import torch
import yaml
from helpers.cli import Entry, assert_clean_error
from helpers.tiny_runs import tiny_gpt_run, write_corpus

from wavelab.core.checkpoints import load_module
from wavelab.core.errors import ConfigError
from wavelab.core.records import MODULE_KEY

MODEL = {"run": ["model=gpt"], "eval": [], "sample": []}


class Payload:
    """Unpickling this runs ``pathlib.Path(marker).touch()``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, cache_dir):
    """A real tiny GPT run: (its run dir, the corpus)."""
    root = tmp_path_factory.mktemp("tiny")
    corpus = write_corpus(root / "corpus.txt")
    run_dir, _ = tiny_gpt_run(Entry(root / "work", cache_dir), corpus)
    return run_dir, corpus


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


def pickled_checkpoint(path: Path, marker: Path) -> Path:
    torch.save(
        {
            "state_dict": {},
            MODULE_KEY: "wavelab.wavegpt.module:LanguageModelModule",
            "x": Payload(marker),
        },
        path,
    )
    return path


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/served``; records every request."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.mark.parametrize("module", ["run", "eval", "sample"])
def test_remote_pickle_is_refused_unfetched(entry, server, marker, module):
    url, served, requests = server
    pickled_checkpoint(served / "x.ckpt", marker)
    result = entry(module, f"ckpt_path={url}/x.ckpt", *MODEL[module])
    assert_clean_error(result, "ckpt_path", url)
    assert "remote" in result.stdout + result.stderr
    assert not marker.exists() and requests == []


@pytest.mark.parametrize("module", ["run", "eval", "sample"])
def test_local_pickle_payload_is_refused(entry, marker, module, tmp_path):
    ckpt = pickled_checkpoint(tmp_path / "evil.ckpt", marker)
    result = entry(module, f"ckpt_path={ckpt}", *MODEL[module])
    assert_clean_error(result, "ckpt_path", "evil.ckpt", "weights-only")
    assert not marker.exists()


def copy_run(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to)
    return to


def edit_saved_config(run_dir: Path, edit) -> None:
    path = run_dir / ".hydra" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg))


def torch_load_node(payload: Path) -> dict:
    return {"_target_": "torch.load", "f": str(payload), "weights_only": False}


@pytest.mark.parametrize(
    ("where", "edit"),
    [
        ("data._target_", lambda cfg, node: cfg.update(data=node)),
        ("data.path._target_", lambda cfg, node: cfg["data"].update(path=node)),
    ],
)
def test_eval_refuses_targets_in_a_saved_data_config(tiny, entry, marker, tmp_path, where, edit):
    run = copy_run(tiny[0], tmp_path / "downloaded")
    payload = pickled_checkpoint(tmp_path / "payload.pt", marker)
    edit_saved_config(run, lambda cfg: edit(cfg, torch_load_node(payload)))
    result = entry("eval", f"ckpt_path={run}/checkpoints/last.ckpt")
    assert_clean_error(result, where, "torch.load", "config.yaml")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("where", "edit"),
    [
        ("callbacks.evil._target_", lambda cfg, node: cfg["callbacks"].update(evil=node)),
        (
            "model.optimizer._target_",
            lambda cfg, node: cfg["model"].update(optimizer={**node, "_partial_": True}),
        ),
        ("trainer.plugins[0]._target_", lambda cfg, node: cfg["trainer"].update(plugins=[node])),
    ],
)
def test_resume_dir_refuses_targets_in_a_saved_config(tiny, entry, marker, tmp_path, where, edit):
    run = copy_run(tiny[0], tmp_path / "downloaded")
    payload = pickled_checkpoint(tmp_path / "payload.pt", marker)
    edit_saved_config(run, lambda cfg: edit(cfg, torch_load_node(payload)))
    result = entry("run", f"resume_dir={run}", "trainer.max_steps=4")
    assert_clean_error(result, where, "torch.load")
    assert not marker.exists()


def test_checkpoint_hparams_cannot_name_targets_or_instantiators(tiny, tmp_path, marker):
    good = torch.load(tiny[0] / "checkpoints" / "last.ckpt", weights_only=True)
    payload = pickled_checkpoint(tmp_path / "payload.pt", marker)
    optimizer = {**torch_load_node(payload), "_partial_": True}
    bad_optimizer = {
        **good,
        "hyper_parameters": {**good["hyper_parameters"], "optimizer": optimizer},
    }
    torch.save(bad_optimizer, tmp_path / "optimizer.ckpt")
    with pytest.raises(ConfigError, match=r"hyper_parameters.optimizer._target_='torch.load'"):
        load_module(tmp_path / "optimizer.ckpt")
    instantiator = {**good["hyper_parameters"], "_instantiator": "os.system"}
    torch.save({**good, "hyper_parameters": instantiator}, tmp_path / "instantiator.ckpt")
    with pytest.raises(ConfigError, match="hyperparameters wavelab never writes"):
        load_module(tmp_path / "instantiator.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("named", ["os:system", "evil_module:Module"])
@pytest.mark.parametrize("module", ["eval", "sample"])
def test_a_checkpoint_naming_a_foreign_module_is_refused_unimported(
    tiny, entry, tmp_path, named, module
):
    marker = entry.cwd / "IMPORTED"
    # On the subprocess's sys.path (its cwd): importing it would create the marker.
    (entry.cwd / "evil_module.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nclass Module: pass\n"
    )
    ckpt = torch.load(tiny[0] / "checkpoints" / "last.ckpt", weights_only=True)
    torch.save({**ckpt, MODULE_KEY: named}, tmp_path / "foreign.ckpt")
    result = entry(module, f"ckpt_path={tmp_path / 'foreign.ckpt'}")
    assert_clean_error(result, "ckpt_path", "foreign.ckpt", named)
    assert not marker.exists()
