"""Errors of the detectors package (subclasses of :class:`breeboost.errors.BreeBoostError`)."""
from breeboost.errors import BreeBoostError

__all__ = ["DetectorError", "ProfileError", "SketchError"]


class DetectorError(BreeBoostError):
    """Base class of the detectors package's errors."""


class ProfileError(DetectorError):
    """A drift reference profile is missing, malformed or of an unsupported version."""


class SketchError(DetectorError):
    """Window sketches cannot be combined or decoded (different profiles, malformed payload)."""
