"""``python -m wavelab.bench <name> [options]``: one subcommand per benchmark module.

A benchmark is a module of this package with ``add_arguments(parser)`` and ``main(args)``;
registering one is a line in ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import importlib

from wavelab.cli import quiet_lightning

# subcommand -> (module under wavelab.bench, one-line help)
BENCHMARKS = {
    "lm": ("lm", "GPT vs WaveGPT training speed, bare PyTorch loop vs wavelab's Lightning path"),
    "wavgpt": (
        "wavgpt",
        "WavGPT training step: time per stage, filter/lifting share, tokens/s, memory",
    ),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wavelab.bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    modules = {}
    for name, (module_name, help_text) in BENCHMARKS.items():
        # Every module is imported up front so that each subcommand's --help lists its options.
        modules[name] = importlib.import_module(f"wavelab.bench.{module_name}")
        modules[name].add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    modules[args.bench].main(args)


if __name__ == "__main__":
    quiet_lightning()
    main()
