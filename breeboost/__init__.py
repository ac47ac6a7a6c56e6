"""BreeBoost core: settings, JSON logs, Kafka client helpers, the embedded broker and the CLI.

The domain packages (`simulator`, `models`, `detectors`, `streams`, `incident`) sit beside this one.
"""
from breeboost.errors import BreeBoostError, SettingsError

__all__ = ["BreeBoostError", "SettingsError"]
__version__ = "0.1.0"
