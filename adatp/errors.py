"""Errors that adatp raises on bad input. Each names the problem, the value and the fix.

All derive from :class:`AdaTPError`, so a caller (the CLI) can catch them and print one line
instead of a traceback. Those that are also ``ValueError``s keep that base, so ``except ValueError``
in user code still works.
"""

from __future__ import annotations


class AdaTPError(Exception):
    """Base class of every error adatp raises on purpose."""


class ConfigError(AdaTPError, ValueError):
    """A pruning setting is invalid (retention, FLOPs ratio, schedule, method options)."""


class VideoError(AdaTPError, ValueError):
    """A video could not be used: missing file, not a video, no decodable frames."""


class InputError(AdaTPError, ValueError):
    """Model inputs the runtime cannot prune correctly (no video, batch > 1, padding, ...)."""


class UnsupportedModelError(AdaTPError, TypeError):
    """The model class or its configuration is not supported by any adapter."""
