"""``python -m wavelab.wavgpt.retrieval ckpt_paths=[...]`` (keys: conf/retrieval.yaml).

Prints one row per checkpoint and per two-part width, and writes them as JSON to ``out=``.
Every user error ends as one line and exit code 2, before the data is read.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from wavelab.core.cli import checked_device, hydra_entry, literal_overrides, required
from wavelab.core.errors import ConfigError
from wavelab.core.user_files import output_file, write_output

log = logging.getLogger("wavelab.wavgpt.retrieval")

LITERAL_KEYS = ("out",)
COLUMNS = (
    "bits_per_token",
    "cosine_unrefined",
    "recall_at_1_unrefined",
    "recall_at_10_unrefined",
    "spearman_unrefined",
    "cosine",
    "recall_at_10",
    "spearman",
)


def checked_count(cfg: DictConfig, key: str, allow_none: bool) -> int | None:
    value = cfg.get(key)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "an integer >= 1" + (" or null" if allow_none else "")
        raise ConfigError(f"{key}={value!r} is invalid: must be {allowed}")
    return value


def table(results: dict[str, dict[str, float]]) -> str:
    references = results["references"]
    rows = [(name, metrics) for name, metrics in results.items() if name != "references"]
    for bits in (1, 4, 8, 16):
        prefix = f"ref/two_part_{bits}bit/"
        two_part = {
            k.removeprefix(prefix): v for k, v in references.items() if k.startswith(prefix)
        }
        rows.append((f"two-part, {bits}-bit embedding + lzma", two_part))
    lines = ["| code | " + " | ".join(COLUMNS) + " |", "|" + " --- |" * (len(COLUMNS) + 1)]
    for name, metrics in rows:
        cells = [f"{metrics[c]:.4g}" if c in metrics else "" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{int(references['blocks'])} held-out blocks"


def run(cfg: DictConfig) -> dict:
    required(cfg, "ckpt_paths")
    paths = cfg.ckpt_paths
    paths = [str(p) for p in (paths if OmegaConf.is_list(paths) else [paths])]
    if not paths:
        raise ConfigError("ckpt_paths=[] is invalid: give at least one WavGPT checkpoint")
    max_blocks = checked_count(cfg, "max_blocks", allow_none=True)
    batch_size = checked_count(cfg, "batch_size", allow_none=False)
    device = checked_device(str(cfg.device))
    out = output_file(str(cfg.out), "out", protect=paths) if cfg.out is not None else None

    from wavelab.core.checkpoints import load_module
    from wavelab.core.config import instantiate
    from wavelab.core.saved_config import run_data_config
    from wavelab.wavgpt.module import WavGPTModule
    from wavelab.wavgpt.retrieval.scale import retrieval_at_scale

    modules = {}
    for path in paths:
        module = load_module(path, map_location=device)
        if not isinstance(module, WavGPTModule):
            raise ConfigError(
                f"ckpt_paths: {path!r} holds a {type(module).__name__}, not a WavGPT checkpoint"
            )
        modules[path] = module.eval()
    data_cfg = run_data_config(Path(paths[0]).expanduser())
    if data_cfg is None:
        raise ConfigError(f"ckpt_paths: {paths[0]!r} has no saved run config beside it")
    overrides = {"num_val_blocks": max_blocks, "batch_size": batch_size, "teacher_cache": False}
    data = instantiate(OmegaConf.merge(data_cfg, overrides), "data")
    data.prepare_data()
    data.setup("validate")
    batches = ({k: v.to(device) for k, v in b.items()} for b in data.val_dataloader())
    results = retrieval_at_scale(modules, batches)
    print(table(results))
    if out is not None:
        write_output(out, json.dumps(results, indent=1).encode(), "out")
        log.info("wrote %s", out)
    return results


@hydra_entry("retrieval")
def retrieval_app(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    """Console entry; file-name keys stay literal."""
    sys.argv = [sys.argv[0], *literal_overrides(sys.argv[1:], LITERAL_KEYS)]
    retrieval_app()


if __name__ == "__main__":
    main()
