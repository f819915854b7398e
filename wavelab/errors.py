"""The one exception type for bad user input, so entry points can print it without a traceback."""


class ConfigError(ValueError):
    """A config value is wrong. The message names the key, the bad value and what is allowed."""
