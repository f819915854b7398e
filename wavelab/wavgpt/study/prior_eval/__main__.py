"""``python -m wavelab.wavgpt.study.prior_eval ckpt_paths=[...] prior=...`` (keys: conf/prior_eval.yaml).

Prints one row per checkpoint and prior weight, and writes them as JSON to ``out=``. Every user
error ends as one line and exit code 2, before the data is read.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from wavelab.core.cli import checked_device, hydra_entry, required
from wavelab.core.errors import ConfigError
from wavelab.core.user_files import output_file
from wavelab.wavgpt.study.held_out import (
    checked_count,
    ckpt_path_list,
    held_out_batches,
    load_wavgpt_modules,
    report,
)

LITERAL_KEYS = ("prior", "out")
COLUMNS = (
    "bits_per_token",
    "acc",
    "exact_blocks",
    "acc_candidates",
    "exact_blocks_candidates",
    "decode_cpu_s_per_block",
)


def checked_settings(cfg: DictConfig) -> list:
    """One PriorSettings per weight of ``weights`` (a number or a non-empty list of them)."""
    from wavelab.wavgpt.config import PriorSettings

    value = cfg.weights
    weights = list(value) if OmegaConf.is_list(value) else [value]
    if not weights:
        raise ConfigError(f"weights={value} is invalid: must be a list of numbers >= 0")
    keys = ("weights", "beam", "candidates")
    return [PriorSettings(w, cfg.beam, cfg.candidates, keys=keys) for w in weights]


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| code, prior weight | " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + " --- |" * (len(COLUMNS) + 1))
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.4g}" for c in COLUMNS) + " |")
    blocks = int(next(iter(results.values()))["blocks"])
    return "\n".join(lines) + f"\n\n{blocks} held-out blocks"


def run(cfg: DictConfig) -> dict:
    paths = ckpt_path_list(cfg, "ckpt_paths")
    prior_path = required(cfg, "prior")
    settings = checked_settings(cfg)
    max_blocks = checked_count(cfg, "max_blocks", allow_none=True)
    batch_size = checked_count(cfg, "batch_size", allow_none=False)
    device = checked_device(str(cfg.device))
    out = output_file(str(cfg.out), "out", protect=[*paths, prior_path]) if cfg.out else None

    from wavelab.core.checkpoints import load_module
    from wavelab.wavgpt.codec.prior import check_prior
    from wavelab.wavgpt.study.prior_eval.scores import decode_with_prior

    modules = load_wavgpt_modules(paths, device, "ckpt_paths")
    lm = load_module(prior_path, map_location=device, key="prior")
    check_prior(lm, next(iter(modules.values())).tokenizer.get_vocab(), f"prior={prior_path!r}")
    batches = held_out_batches(paths[0], max_blocks, batch_size, device, "ckpt_paths")
    results = decode_with_prior(modules, batches, lm, settings)
    report(results, table(results), out)
    return results


@hydra_entry("prior_eval", text_keys=LITERAL_KEYS)
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
