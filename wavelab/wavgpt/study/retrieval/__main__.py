"""``python -m wavelab.wavgpt.study.retrieval ckpt_paths=[...]`` (keys: conf/retrieval.yaml).

Prints one row per checkpoint and per two-part width, and writes them as JSON to ``out=``.
Every user error ends as one line and exit code 2, before the data is read.
"""

from __future__ import annotations

from omegaconf import DictConfig

from wavelab.core.cli import checked_device, hydra_entry
from wavelab.core.user_files import output_file
from wavelab.wavgpt.study.held_out import (
    checked_count,
    ckpt_path_list,
    held_out_batches,
    load_wavgpt_modules,
    report,
)

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
    paths = ckpt_path_list(cfg, "ckpt_paths")
    max_blocks = checked_count(cfg, "max_blocks", allow_none=True)
    batch_size = checked_count(cfg, "batch_size", allow_none=False)
    device = checked_device(str(cfg.device))
    out = output_file(str(cfg.out), "out", protect=paths) if cfg.out is not None else None

    from wavelab.wavgpt.study.retrieval.scale import retrieval_at_scale

    modules = load_wavgpt_modules(paths, device, "ckpt_paths")
    batches = held_out_batches(paths[0], max_blocks, batch_size, device, "ckpt_paths")
    results = retrieval_at_scale(modules, batches)
    report(results, table(results), out)
    return results


@hydra_entry("retrieval", text_keys=LITERAL_KEYS)
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
