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
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import hydra
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from wavelab.core.config import CONFIG_DIR
from wavelab.core.errors import DIVERGED_EXIT, USER_ERROR_EXIT, ConfigError, TrainingDiverged

# Set by a task function's wrapper on exceptions that escape it, so that hydra_entry tells a bug
# inside a run (a traceback) from a composition error before it (one line).
_RAISED_IN_TASK = "_wavelab_raised_in_task"


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def user_error(log_name: str, message: str) -> None:
    """Logs ``error: <message>`` as one line and exits with USER_ERROR_EXIT."""
    logging.getLogger(log_name).error("error: %s", one_line(message))
    sys.exit(USER_ERROR_EXIT)


def hydra_entry(
    config_name: str,
    literal_keys: Sequence[str] = (),
    text_keys: Sequence[str] = (),
    bare_word: str | None = None,
    bare_choices: Callable[[], Sequence[str]] | None = None,
) -> Callable[[Callable[[DictConfig], object]], Callable[[], None]]:
    """Decorator: ``fn(cfg)`` becomes the Hydra main of ``conf/<config_name>.yaml``.

    A ConfigError raised by ``fn``, a required key left unset (``???``), and Hydra's own errors
    while parsing and composing the command line (unknown key, unknown group option, bad override
    syntax) are logged as one ``error: ...`` line and exit with ``USER_ERROR_EXIT``; a sweep whose
    job diverged (``TrainingDiverged``) ends the same way with ``DIVERGED_EXIT``; anything else
    is a bug and keeps its traceback. Keep module-level imports of an entry light (no Lightning,
    no torch, no transformers) so ``--help`` and config errors are fast. A value of one of
    ``literal_keys`` (file names, free text) that Hydra's grammar cannot parse (``ü``, ``=``, a
    space) is taken literally (:func:`unparsable_as_literal`); a value of ``text_keys`` (free
    text: commas, quotes and all) always is (:func:`literal_overrides`). With ``bare_word``, a
    bare first argument ``WORD`` stands for ``<bare_word>=WORD`` (:func:`bare_word_as`, checked
    against ``bare_choices()`` if given).
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
            if bare_word is not None:
                bare_word_as(bare_word, bare_choices() if bare_choices is not None else None)
            if literal_keys or text_keys:
                argv = literal_overrides(sys.argv[1:], text_keys)
                sys.argv = [sys.argv[0], *unparsable_as_literal(argv, literal_keys)]
            try:
                app()
            except TrainingDiverged:
                # A sweep's job re-raised it so that the sweep knows it failed (wavelab.run); the
                # job has logged its one line, and Hydra "Error executing job with overrides".
                logging.getLogger(fn.__module__).error(
                    "error: a job of this sweep diverged (its overrides are above); the jobs of "
                    "its batch all ran"
                )
                sys.exit(DIVERGED_EXIT)
            except (HydraException, OmegaConfBaseException) as e:
                if getattr(e, _RAISED_IN_TASK, False):
                    raise
                if isinstance(e, OverrideParseException):
                    key = str(e.override).partition("=")[0]
                    user_error(
                        fn.__module__,
                        f"cannot parse the override {e.override!r}: {e}; to give text or a file "
                        f"name with spaces, '=', or non-ASCII letters, quote it: '{key}=\"...\"'",
                    )
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


def literal_overrides(argv: Sequence[str], keys: Sequence[str]) -> list[str]:
    """``argv`` with the value of every ``key=value`` of ``keys`` quoted for Hydra, so that free
    text and file names are taken literally, quotes included: unquoted, Hydra reads ``a, b`` as a
    sweep, refuses ``=`` (base64, Lightning's ``step=100.ckpt``) and resolves ``${...}``."""

    def quote(value: str) -> str:
        # OmegaConf resolves `${` unless it is escaped as `\${`; backslashes before it pair up.
        value = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + r"\${", value)
        # Hydra: in '...' a quote is \' and backslashes before a quote (or the end) pair up.
        value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + r"\'", value)
        return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value) + "'"

    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys:
            arg = f"{key}={quote(value)}"
        out.append(arg)
    return out


def unparsable_as_literal(argv: Sequence[str], keys: Sequence[str]) -> list[str]:
    """``argv`` with each ``key=value`` of ``keys`` that Hydra's grammar cannot parse (a path
    with ``ü``, ``=`` or a space, Lightning's ``epoch=0-step=20.ckpt``) quoted as a literal
    (:func:`literal_overrides`); values it parses (``null``, ``${...}``, a sweep) stay as given."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out = []
    for arg in argv:
        if arg.partition("=")[0] in keys:
            try:
                parser.parse_override(arg)
            except HydraException:  # OverrideParseException, or the lexer's own error
                (arg,) = literal_overrides([arg], keys)
        out.append(arg)
    return out


def required(cfg: DictConfig, key: str) -> str:
    """``cfg[key]`` as a string; ConfigError when it is missing (``???``) or null."""
    if OmegaConf.is_missing(cfg, key) or cfg[key] is None:
        raise ConfigError(f"{key} is missing: give {key}=...")
    return str(cfg[key])


def checked_device(value: str) -> str:
    """A ``device=`` value that torch can use on this machine; ConfigError otherwise."""
    import torch  # not at module level: `--help` stays fast

    try:
        device = torch.device(value)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={value!r} is invalid: use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={value!r} is invalid: this machine has no CUDA GPU; use cpu")
    return value


# Lightning's lines that say nothing about the run: an advert for its cloud logger, and which
# accelerators exist (the run announces the one it uses).
NOISE = ("💡 Tip:", "GPU available:", "TPU available:", "HPU available:")


def _not_noise(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(NOISE)


def quiet_lightning() -> None:
    """Drops Lightning's console lines that say nothing about the run (NOISE), a deprecation
    warning that Lightning's own code draws from torch, and the warning about modules in eval
    mode at the start of training (wavelab's only such modules are frozen encoders, on purpose).

    Call it after importing Lightning: imported after Hydra has set up logging, Lightning's own
    console handler would print each of its lines a second time next to Hydra's (which also
    writes them to run.log), so that handler goes. Calling it again adds nothing twice.
    """
    if logging.getLogger().hasHandlers():  # Hydra's; without them Lightning's is the only one
        logging.getLogger("lightning").handlers.clear()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_noise)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


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
