"""Helpers for wavelab's entry points.

Every ``python -m wavelab.<entry>`` is a Hydra app over ``conf/<entry>.yaml`` built with
:func:`hydra_entry`, so one override syntax (``key=value``) and ``--help`` work everywhere, and
a user error (:class:`ConfigError`) ends as one line and exit code 2. Plus a quieter console for
the entries that run Lightning.
"""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable, Sequence

import hydra
from omegaconf import DictConfig

from wavelab.config import CONFIG_DIR
from wavelab.errors import ConfigError

USER_ERROR_EXIT = 2


def hydra_entry(config_name: str) -> Callable[[Callable[[DictConfig], object]], Callable]:
    """Decorator: ``fn(cfg)`` becomes the Hydra main of ``conf/<config_name>.yaml``.

    A ConfigError raised by ``fn`` is logged as one ``error: ...`` line and exits with
    ``USER_ERROR_EXIT``; anything else is a bug and keeps its traceback. Keep module-level imports
    of an entry light (no Lightning, no transformers) so ``--help`` and config errors are fast.
    """

    def decorate(fn: Callable[[DictConfig], object]) -> Callable:
        @functools.wraps(fn)
        def guarded(cfg: DictConfig):
            try:
                return fn(cfg)
            except ConfigError as e:
                logging.getLogger(fn.__module__).error("error: %s", e)
                sys.exit(USER_ERROR_EXIT)

        return hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(
            guarded
        )

    return decorate


def parse_keys(
    argv: Sequence[str], keys: dict[str, str], required: Sequence[str] = ()
) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; ``keys`` maps every known key to its
    help. Raises ConfigError for unknown, repeated or missing keys and for bare words."""
    out: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"expected key=value, got {arg!r}")
        if key not in keys:
            raise ConfigError(f"unknown key {key!r}: known keys are {', '.join(keys)}")
        if key in out:
            raise ConfigError(f"{key} is given twice")
        out[key] = value
    missing = [k for k in required if k not in out]
    if missing:
        raise ConfigError(f"missing {', '.join(f'{k}=...' for k in missing)}")
    return out


def usage(doc: str, keys: dict[str, str]) -> str:
    width = max(map(len, keys)) + 2
    return doc.strip() + "\n\nkeys:\n" + "\n".join(f"  {k:<{width}}{h}" for k, h in keys.items())


def run_main(fn: Callable[[], None]) -> None:
    """Runs an entry point; user errors print one line to stderr and exit 2, no traceback.

    ValueError covers ConfigError and everything the codec raises for corrupt or mismatched
    codes; OSError covers unreadable files.
    """
    try:
        fn()
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def quiet_lightning() -> None:
    """Drops two lines Lightning prints in every run that say nothing about the run: an advert
    for its cloud logger, and a deprecation warning that Lightning's own code draws from torch."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not record.getMessage().startswith("💡 Tip:")
    )
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def bare_word_as(key: str, choices: Sequence[str] | None = None) -> None:
    """Lets ``python -m wavelab.<entry> WORD ...`` stand for ``... key=WORD ...``: rewrites a bare
    first argument of ``sys.argv`` in place. With ``choices``, a ``key`` value outside them exits
    with one line naming the allowed ones (Hydra's own message would be a paragraph)."""
    args = sys.argv[1:]
    if args and not args[0].startswith("-") and "=" not in args[0]:
        sys.argv[1] = f"{key}={args[0]}"
    for arg in sys.argv[1:]:
        name, sep, value = arg.partition("=")
        if sep and name == key and choices is not None and value not in choices:
            print(
                f"error: {key}={value} is invalid: choose one of {', '.join(choices)}",
                file=sys.stderr,
            )
            sys.exit(USER_ERROR_EXIT)
