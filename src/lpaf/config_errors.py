"""The error a bad configuration raises (:class:`ConfigError`); its own module so every
stage's config checks can raise it without importing the validator."""


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""
