"""Which checkpoints this wavelab reads: every checkpoint records its format number, and a
newer wavelab reads every format listed in FORMATS. A format is a promise about the file's
layout (its keys, the hyperparameters of each model, the meaning of its weights), not about the
package version that wrote it: a release that changes the layout adds a format number and
keeps reading the older ones."""

from __future__ import annotations

from pathlib import Path

from wavelab import __version__
from wavelab.core.errors import ConfigError

FORMAT_KEY = "wavelab_format"
VERSION_KEY = "wavelab_version"
# The formats this wavelab reads, and what each one is.
FORMATS = {
    1: "wavelab 0.1.0 before checkpoints recorded their format: the layout of format 2",
    2: "the class (module:qualname), the wavelab version, and this format number recorded",
}
CHECKPOINT_FORMAT = max(FORMATS)  # what this wavelab writes
# Format 1 files carry no format number; only this version wrote them.
UNNUMBERED_VERSION = "0.1.0"


def checkpoint_format(ckpt: dict, ckpt_path: str | Path, key: str = "ckpt_path") -> int:
    """The checkpoint's format, one this wavelab reads; ConfigError in one line naming the
    wavelab that wrote it and which can read it otherwise."""
    shown = f"{key}={str(ckpt_path)!r}"
    written_by = ckpt.get(VERSION_KEY)
    number = ckpt.get(FORMAT_KEY)
    if number is None:
        if written_by == UNNUMBERED_VERSION:
            return 1
        raise ConfigError(
            f"{shown} was written by wavelab {written_by or '< 0.1.0'}, before wavelab's "
            f"checkpoint formats: no wavelab reads it (this is wavelab {__version__}, which reads "
            f"formats {min(FORMATS)}-{CHECKPOINT_FORMAT})"
        )
    if isinstance(number, bool) or not isinstance(number, int) or number not in FORMATS:
        newer = isinstance(number, int) and number > CHECKPOINT_FORMAT
        who = f"wavelab {written_by}" if written_by else "an unknown wavelab"
        advice = (
            f"read it with {who} or a newer one" if newer else "it is no format any wavelab wrote"
        )
        raise ConfigError(
            f"{shown} is in checkpoint format {number!r}, written by {who}; this is wavelab "
            f"{__version__}, which reads formats {min(FORMATS)}-{CHECKPOINT_FORMAT}: {advice}"
        )
    return number
