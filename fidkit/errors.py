"""Errors fidkit reports to its users.

Every error fidkit raises on purpose is a :class:`FidkitError` whose message is one line
that says what is wrong and what to do. The CLI prints that line and exits 1 (data
errors); usage errors are click's and exit 2.
"""


class FidkitError(Exception):
    """Base class: a problem with the user's input, data, weights or environment."""


class SourceError(FidkitError):
    """An image source (folder, file, array) cannot be read as asked."""


class StatsError(FidkitError):
    """Statistics are malformed, incompatible, or cannot give a defined result."""


class WeightsError(FidkitError):
    """Network weights cannot be found, fetched, verified or loaded."""


class FidkitWarning(UserWarning):
    """Something the user should know about a result (few images, unknown provenance)."""
