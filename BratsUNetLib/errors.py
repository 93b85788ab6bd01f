"""User-facing errors.

A :class:`BratsUNetError` carries a one-line message that says what is wrong and what to do. The command
line prints it without a traceback and exits with :attr:`ExitCode.USER_ERROR`; the Slicer module shows it in the
panel.
"""

import enum


class ExitCode(enum.IntEnum):
    """The exit status of a ``bratsunet`` command, and of a job of the Slicer module's worker."""

    SUCCESS = 0
    USER_ERROR = 2  # after one line that says what is wrong and what to do
    CANCELLED = 130  # what shells report for SIGINT (Ctrl-C)


class BratsUNetError(Exception):
    """A problem with the user's input (files, config, checkpoint, options), not a bug."""


class ConfigError(BratsUNetError):
    """An invalid config file: names the block, the key, the bad value and what is allowed."""


class CheckpointError(BratsUNetError):
    """A file that is not a usable checkpoint, or one that does not fit the network."""


class ImageError(BratsUNetError):
    """An image that cannot be read or used (missing, not NIfTI, truncated, wrong dimensions, bad values)."""


class Cancelled(BratsUNetError):
    """The user stopped long-running work (Ctrl-C, SIGTERM, Cancel in Slicer)."""
