"""Every error the package raises on purpose derives from :class:`InductionLensError`.

Level: a leaf. It imports nothing from the package, and every module may import it.

The command line catches :class:`InductionLensError` and prints its message as one line (the
messages name the problem and the fix); anything else is a bug and keeps its traceback.
"""

__all__ = [
    "ConfigError",
    "DataError",
    "EvalError",
    "HubError",
    "InductionLensError",
]


class InductionLensError(Exception):
    """The root of every expected failure: bad input, a corrupted file, a missing resource."""


class ConfigError(InductionLensError, ValueError):
    """A config field or argument has a bad value; the message names the field and the fix."""


class HubError(InductionLensError, RuntimeError):
    """Something in a checkpoint hub is missing, corrupted or in use; the message names the file."""


class DataError(ConfigError):
    """A corpus or task cannot be built; the message names the problem and the fix."""


class EvalError(ConfigError):
    """An evaluator got an input it cannot measure; the message names the input and the fix."""
