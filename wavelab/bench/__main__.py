"""``python -m wavelab.bench <name> [key=value ...]``: one config per benchmark in conf/bench/.

The first bare argument picks the benchmark (``bench=<name>``); its keys are in conf/bench.yaml
and conf/bench/<name>.yaml (``--help`` lists them). Every other ``key=value`` overrides the
benchmarked training config (``model.keep_ratio=0.125``): it is passed on in ``overrides``.
Registering a benchmark is a line in ``BENCHMARKS`` and a file in conf/bench/; its module has
``main(cfg)``.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from wavelab.bench import check_settings
from wavelab.core.cli import USER_ERROR_EXIT, bare_word_as, hydra_entry, quiet_lightning
from wavelab.core.config import CONFIG_DIR

# bench= option -> the module that runs it (imported only when chosen: they pull in Lightning)
BENCHMARKS = {
    "lm": "wavelab.wavegpt.bench",
    "wavgpt": "wavelab.wavgpt.bench.train",
    "codec": "wavelab.wavgpt.bench.codec",
    "data": "wavelab.data.bench",
}


@hydra_entry("bench")
def bench_entry(cfg: DictConfig) -> None:
    check_settings(cfg)  # before the benchmark's module pulls in torch and Lightning
    name = HydraConfig.get().runtime.choices["bench"]
    importlib.import_module(BENCHMARKS[name]).main(cfg)


def bench_keys(name: str) -> set[str]:
    """The top-level keys of conf/bench.yaml and conf/bench/<name>.yaml, plus Hydra's own."""
    files = (Path(CONFIG_DIR) / "bench.yaml", Path(CONFIG_DIR) / "bench" / f"{name}.yaml")
    return {key for f in files for key in OmegaConf.load(f)} - {"defaults"} | {"bench", "hydra"}


def pass_on_run_overrides(argv: list[str]) -> list[str]:
    """``argv`` with every ``key=value`` that is not a bench key gathered into one
    ``overrides=[...]`` (quoted for Hydra's list syntax, which has no bare ``=``)."""
    name = next((a.partition("=")[2] for a in argv if a.startswith("bench=")), "lm")
    own = bench_keys(name)
    kept, passed = [], []
    for arg in argv:
        key, sep, _ = arg.partition("=")
        root = key.lstrip("+~").split(".")[0].split("/")[0]
        (passed if sep and not arg.startswith("-") and root not in own else kept).append(arg)
    if not passed:
        return kept
    if any(a.startswith("overrides=") for a in kept):
        print(
            f"error: {passed[0]} and overrides=... are both given: use one of the two forms",
            file=sys.stderr,
        )
        sys.exit(USER_ERROR_EXIT)
    return [*kept, f"overrides=[{','.join(json.dumps(a) for a in passed)}]"]


def main() -> None:
    bare_word_as("bench", choices=list(BENCHMARKS))
    sys.argv = [sys.argv[0], *pass_on_run_overrides(sys.argv[1:])]
    quiet_lightning()
    bench_entry()


if __name__ == "__main__":
    main()
