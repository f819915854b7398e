"""Helpers for wavelab's entry points.

Every ``python -m wavelab.<entry>`` is a Hydra app over ``conf/<entry>.yaml`` built with
:func:`hydra_entry`, so one override syntax (``key=value``) and ``--help`` work everywhere, and
a user error (:class:`ConfigError`) ends as one line and exit code 2. Plus a quieter console for
the entries that run Lightning.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import hydra
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from wavelab.config import CONFIG_DIR
from wavelab.errors import ConfigError

USER_ERROR_EXIT = 2
# Set by a task function's wrapper on exceptions that escape it, so that hydra_entry tells a bug
# inside a run (a traceback) from a composition error before it (one line).
_RAISED_IN_TASK = "_wavelab_raised_in_task"


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def user_error(log_name: str, message: str) -> None:
    """Logs ``error: <message>`` as one line and exits with USER_ERROR_EXIT."""
    logging.getLogger(log_name).error("error: %s", one_line(message))
    sys.exit(USER_ERROR_EXIT)


def hydra_entry(config_name: str) -> Callable[[Callable[[DictConfig], object]], Callable[[], None]]:
    """Decorator: ``fn(cfg)`` becomes the Hydra main of ``conf/<config_name>.yaml``.

    A ConfigError raised by ``fn``, a required key left unset (``???``), and Hydra's own errors
    while parsing and composing the command line (unknown key, unknown group option, bad override
    syntax) are logged as one ``error: ...`` line and exit with ``USER_ERROR_EXIT``; anything else
    is a bug and keeps its traceback. Keep module-level imports of an entry light (no Lightning,
    no torch, no transformers) so ``--help`` and config errors are fast.
    """

    def decorate(fn: Callable[[DictConfig], object]) -> Callable[[], None]:
        @functools.wraps(fn)
        def guarded(cfg: DictConfig):
            try:
                return fn(cfg)
            except ConfigError as e:
                user_error(fn.__module__, str(e))
            except MissingMandatoryValue as e:
                user_error(fn.__module__, f"{e.full_key} is required: give {e.full_key}=...")
            except Exception as e:
                setattr(e, _RAISED_IN_TASK, True)
                raise

        app = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(
            guarded
        )

        @functools.wraps(fn)
        def main() -> None:
            # Hydra prints its errors in two lines and exits 1 unless HYDRA_FULL_ERROR is set, in
            # which case it raises them: that is the only way to report them as one line.
            previous = os.environ.get("HYDRA_FULL_ERROR")
            os.environ["HYDRA_FULL_ERROR"] = "1"
            try:
                app()
            except (HydraException, OmegaConfBaseException) as e:
                if getattr(e, _RAISED_IN_TASK, False):
                    raise
                if isinstance(e, OverrideParseException):
                    user_error(fn.__module__, f"cannot parse the override {e.override!r}: {e}")
                user_error(fn.__module__, str(e))
            finally:
                if previous is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = previous

        return main

    return decorate


def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    """The composed config as a rich tree, one branch per top-level key (LHT's print_config),
    printed to the console and, if ``save_to`` is given, saved there as plain text."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    for key, value in cfg.items():
        text = (
            OmegaConf.to_yaml(value, resolve=True)
            if isinstance(value, DictConfig | ListConfig)
            else str(value)
        )
        tree.add(str(key), style="bold").add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as f:
            rich.print(tree, file=f)


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


# Lightning's lines that say nothing about the run: an advert for its cloud logger, and which
# accelerators exist (the run announces the one it uses).
NOISE = ("💡 Tip:", "GPU available:", "TPU available:", "HPU available:")


@functools.cache
def quiet_lightning() -> None:
    """Drops Lightning's console lines that say nothing about the run (NOISE), a deprecation
    warning that Lightning's own code draws from torch, and the warning about modules in eval
    mode at the start of training (wavelab's only such modules are frozen encoders, on purpose).

    Call it after importing Lightning: imported after Hydra has set up logging, Lightning's own
    console handler would print each of its lines a second time next to Hydra's (which also
    writes them to run.log), so that handler goes.
    """
    if logging.getLogger().hasHandlers():  # Hydra's; without them Lightning's is the only one
        logging.getLogger("lightning").handlers.clear()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not record.getMessage().startswith(NOISE)
    )
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
