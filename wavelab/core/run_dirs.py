"""Run and sweep dirs that belong to one job each, even when jobs start in the same second.

``${unique_dir:<path>}`` (conf/hydra/default.yaml) creates ``<path>`` exclusively and returns it;
if another process already holds it, the next free ``<path>_1``, ``<path>_2``, ... A timestamp
alone let two runs started in the same second share one dir: the config of one, the checkpoints
of the other. Creating the dir is what makes the claim atomic, so the resolver must run once per
job: OmegaConf caches it, Hydra copies that cache into every job of a sweep, and Lightning's DDP
ranks receive the dir on their command line (``hydra.run.dir=...``) instead of resolving it again.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from wavelab.core.errors import ConfigError

RESOLVER = "unique_dir"


def claim_dir(path: str) -> str:
    """Creates ``path``, or the first free ``path_<n>``, and returns the one it created."""
    base = Path(path)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        for n in range(10_000):
            candidate = base if n == 0 else base.with_name(f"{base.name}_{n}")
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            return str(candidate)
    except OSError as e:  # a read-only or full filesystem, a file where a dir should be
        raise ConfigError(
            f"the run dir {base} cannot be created: {e.strerror} (set paths.log_dir to a "
            "writable dir)"
        ) from None
    raise RuntimeError(f"no free run dir beside {base} after 10,000 tries")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, claim_dir, use_cache=True)
