"""The project's base exception. Each package's errors subclass it with messages a user can act on."""


class BreeBoostError(Exception):
    """Base class of every error BreeBoost raises on purpose."""


class SettingsError(BreeBoostError):
    """A setting (environment variable or CLI flag) has an invalid value."""


class BrokerError(BreeBoostError):
    """The embedded broker could not be started or reached."""
