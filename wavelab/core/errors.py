"""The exceptions entry points turn into exit codes, so they print without a traceback.

Light on purpose (no torch, no Lightning): every entry imports it before it knows whether a run
will start.
"""

# Exit codes of `python -m wavelab.run` besides 0 and Python's 1 (a bug: with a traceback).
USER_ERROR_EXIT = 2  # bad input: one `error: ...` line naming the key or file
DIVERGED_EXIT = 3  # the loss or the weights went NaN/inf; nothing non-finite was saved


class ConfigError(ValueError):
    """A config value is wrong. The message names the key, the bad value and what is allowed."""


class TrainingDiverged(RuntimeError):
    """The loss or the weights are NaN or infinite; the run stopped without saving them."""
