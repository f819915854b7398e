"""Reading a run dir's saved Hydra files (``.hydra/config.yaml``, ``.hydra/hydra.yaml``) safely.

A run dir may come from anywhere (downloaded, copied, crafted), so its files are data, never
code: they are parsed by YAML's safe loader, and a value that calls an OmegaConf resolver
(``${name:...}``, e.g. ``${unique_dir:/some/path}``, which creates a directory when resolved)
is refused before anything reads the config, naming the file and the key. Plain interpolations
(``${paths.cache_dir}``) stay: they only point at other values of the same file. The one
exception is a resolver call that is exactly the text wavelab's own conf/ gives a key of that
name (e.g. ``log_dir: ${oc.env:WAVELAB_LOG_DIR,logs}``): that is conf/'s code, not the file's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import GrammarParseError, OmegaConfBaseException
from omegaconf.grammar_parser import parse

from wavelab.core.config import check_targets
from wavelab.core.errors import ConfigError

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml_mapping(path: Path) -> dict:
    """The YAML mapping in ``path``, safely loaded; ConfigError naming the file otherwise."""
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise ConfigError(f"{path} {what}: the run dir is incomplete")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        reason = " ".join(str(e).split())[:200]
        raise ConfigError(f"{path} is not valid YAML: {reason}") from None
    except OSError as e:
        raise ConfigError(f"{path} cannot be read: {e.strerror}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} holds a {type(data).__name__}, not a mapping of keys: not a saved run config"
        )
    return data


def _resolvers(text: str) -> list[str]:
    """The names of the resolvers that OmegaConf would call to resolve ``text``."""
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser as P

    found: list[str] = []
    stack = [parse(text)]
    while stack:
        node = stack.pop()
        if isinstance(node, P.InterpolationResolverContext):
            found.append(node.resolverName().getText())
        stack.extend(c for c in (getattr(node, "children", None) or []) if hasattr(c, "children"))
    return found


def _strings(node, key: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value) of every string at any depth of a plain YAML tree."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _strings(v, f"{key}.{k}".lstrip("."))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{key}[{i}]")
    elif isinstance(node, str):
        yield key, node


@functools.cache
def shipped_resolver_calls() -> frozenset[tuple[str, str]]:
    """(key name, text) of every value in conf/ that calls a resolver, outside conf/hydra (whose
    run-dir resolvers Hydra itself saves elsewhere, in hydra.yaml)."""
    from wavelab.core.config import CONFIG_DIR

    found = set()
    for root, dirs, files in os.walk(CONFIG_DIR, followlinks=True):
        dirs[:] = [d for d in dirs if not (Path(root) == Path(CONFIG_DIR) and d == "hydra")]
        for name in files:
            if name.endswith(".yaml"):
                data = yaml.load(Path(root, name).read_text(), Loader=_YAML_LOADER)
                for key, text in _strings(data):
                    if "${" in text and ":" in text:
                        found.add((key.rpartition(".")[2], text))
    return frozenset(found)


def load_saved_config(path: Path) -> DictConfig:
    """The run config saved at ``path``, with no resolver run and none left to run later but
    conf/'s own (a value whose text conf/ gives a key of that name)."""
    data = read_yaml_mapping(path)
    for key, text in _strings(data):
        if "${" not in text:
            continue
        try:
            names = _resolvers(text)
        except GrammarParseError:
            raise ConfigError(
                f"{path}: {key}={text!r} is refused: an interpolation OmegaConf cannot parse"
            ) from None
        if names and (key.rpartition(".")[2], text) not in shipped_resolver_calls():
            raise ConfigError(
                f"{path}: {key}={text!r} is refused: it calls the resolver {names[0]!r}, and a "
                "saved run config may hold plain values and ${key} interpolations only (a "
                "resolver would run code from a file that may come from anywhere)"
            )
    try:
        return OmegaConf.create(data)
    except (OmegaConfBaseException, ValueError) as e:
        raise ConfigError(f"{path} is not a saved run config: {' '.join(str(e).split())}") from None


def saved_choices(run_dir: Path) -> dict[str, str | None]:
    """The config group choices of the run in ``run_dir`` (``.hydra/hydra.yaml``), as plain
    strings: nothing else of that file is read, and nothing of it is resolved."""
    path = run_dir / ".hydra" / "hydra.yaml"
    data = read_yaml_mapping(path)
    choices = data
    for part in ("hydra", "runtime", "choices"):
        choices = choices.get(part) if isinstance(choices, dict) else None
    if not isinstance(choices, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in choices.items()
    ):
        raise ConfigError(f"{path} has no hydra.runtime.choices of group names: not a run's file")
    return choices


def run_data_config(ckpt_path: Path) -> DictConfig | None:
    """The data config saved by the run that wrote ``<run>/checkpoints/<ckpt>``, read by
    ``load_saved_config`` with its targets checked; None without a saved config."""
    saved = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    if not saved.exists():
        return None
    data = load_saved_config(saved).get("data")
    try:
        check_targets(data, "data")
    except ConfigError as e:
        raise ConfigError(f"{saved}: {e}") from e
    return data
