"""User-facing errors: one line that names the file or config key and what is wrong."""

from __future__ import annotations


class SpineError(Exception):
    """Bad input or configuration. Entry points print it as one line and exit non-zero."""

    exit_code = 1


class ConfigError(SpineError):
    """A config value that is not allowed. Raised before any work starts."""

    exit_code = 2

    def __init__(self, key: str, value, allowed: str):
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key, self.value, self.allowed = key, value, allowed
