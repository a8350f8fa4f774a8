"""The one user-facing configuration error type (its own module so every config module can raise it)."""


class ConfigError(ValueError):
    """A user-facing configuration problem; str(err) is one line naming the field (file, line) and the fix."""
